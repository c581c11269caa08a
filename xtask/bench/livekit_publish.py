"""Publish raw I420 frames as a VP8 camera track with the official LiveKit Python SDK.

The Python half of `cargo xtask bench publish`: the same frames, the same pacing and the same
encoder settings as the Rust publisher (`publish-bench publish`), so that the two processes'
CPU time and peak memory can be compared.

Environment: LIVEKIT_URL, LIVEKIT_TOKEN (a join token for an existing room; never printed).

    python livekit_publish.py --frames FILE --width W --height H --fps F --seconds S [--bitrate BPS]

FILE holds raw I420 frames back to back, W*H*3/2 bytes each; they are all loaded once, then fed
to a `VideoSource` in a loop. Frame n is due at start + n/F (drift-free: a late frame does not
shift the schedule), for S seconds, so S*F frames in all. As with a real-time source, and as the
Rust publisher does, a frame whose due time passed more than one frame interval (1/F) ago is
counted as late and skipped.

Stdout gets exactly one JSON line: {"frames_sent": N, "late": K, "seconds": S}, where N counts
the frames handed to the SDK and S is the measured duration of the publishing phase. Everything
else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time

from livekit import rtc


class _Redact(logging.Filter):
    """Removes the access token from every log record (the SDK logs URLs, which may carry it)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret:
            message = record.getMessage()
            if self._secret in message:
                record.msg = message.replace(self._secret, "[redacted]")
                record.args = None
        return True


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", required=True, help="raw I420 frames, back to back")
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--fps", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--bitrate", type=int, default=2_000_000, help="maximum bitrate, bit/s")
    args = parser.parse_args()
    if args.width <= 0 or args.height <= 0 or args.width % 2 or args.height % 2:
        parser.error("width and height must be positive and even (I420)")
    if args.fps <= 0 or args.seconds <= 0 or args.bitrate <= 0:
        parser.error("fps, seconds and bitrate must be positive")
    return args


def _load_frames(path: str, width: int, height: int) -> list[rtc.VideoFrame]:
    """Every frame of the file, each its own `bytes` (the SDK would copy a sliced buffer on every
    capture)."""
    size = width * height * 3 // 2
    total = os.path.getsize(path)
    if total == 0 or total % size:
        raise ValueError(f"{path}: {total} bytes is not a whole number of {width}x{height} I420 frames")
    frames = []
    with open(path, "rb") as f:
        while data := f.read(size):
            frames.append(rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, data))
    return frames


async def _publish(args: argparse.Namespace, url: str, token: str) -> dict:
    frames = _load_frames(args.frames, args.width, args.height)
    print(f"loaded {len(frames)} frames of {args.width}x{args.height}", file=sys.stderr)

    room = rtc.Room()
    # No subscriptions, and no dynacast: nothing may pause the encoder for want of subscribers.
    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=False, dynacast=False))
    try:
        source = rtc.VideoSource(args.width, args.height)
        track = rtc.LocalVideoTrack.create_video_track("bench", source)
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            simulcast=False,
            video_codec=rtc.VideoCodec.VP8,
            video_encoding=rtc.VideoEncoding(max_bitrate=args.bitrate, max_framerate=args.fps),
            # libvpx in software, like the Rust publisher, even where a hardware encoder exists.
            video_encoder=rtc.VideoEncoderBackend.ENCODER_BACKEND_SOFTWARE,
            # No CPU- or bandwidth-driven downscaling or frame-rate reduction: encode every frame
            # at full resolution, so that both publishers do the same work.
            degradation_preference=rtc.DegradationPreference.MAINTAIN_FRAMERATE_AND_RESOLUTION,
        )
        await room.local_participant.publish_track(track, options)
        print("published; sending frames", file=sys.stderr)

        loop = asyncio.get_running_loop()
        interval = 1.0 / args.fps
        count = round(args.seconds * args.fps)
        sent = late = 0
        start = loop.time()
        for n in range(count):
            due = start + n * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() - due > interval:
                late += 1
                continue
            source.capture_frame(frames[n % len(frames)], timestamp_us=round(n * interval * 1e6))
            sent += 1
        end = start + args.seconds
        if (delay := end - loop.time()) > 0:
            await asyncio.sleep(delay)
        elapsed = loop.time() - start

        _log_encoder_stats(await room.get_rtc_stats())
        await source.aclose()
        return {"frames_sent": sent, "late": late, "seconds": round(elapsed, 3)}
    finally:
        await room.disconnect()


def _log_encoder_stats(stats: rtc.RtcStats) -> None:
    """What libwebrtc really encoded and sent (to stderr), to check that it did not downscale."""
    for s in stats.publisher_stats:
        if s.WhichOneof("stats") != "outbound_rtp":
            continue
        o = s.outbound_rtp
        if o.stream.kind != "video":
            continue
        reason = rtc.stats.QualityLimitationReason.Name(o.outbound.quality_limitation_reason)
        print(
            "encoder: {} {}x{}, {} frames encoded ({} key), {} sent, {:.1f} s encoding, "
            "{} bytes sent, quality limitation {}".format(
                o.outbound.encoder_implementation,
                o.outbound.frame_width,
                o.outbound.frame_height,
                o.outbound.frames_encoded,
                o.outbound.key_frames_encoded,
                o.outbound.frames_sent,
                o.outbound.total_encode_time,
                o.sent.bytes_sent,
                reason,
            ),
            file=sys.stderr,
        )


def run(work, what: str) -> int:
    """Runs `work(url, token)` (a coroutine) with LIVEKIT_URL and LIVEKIT_TOKEN from the
    environment, the token redacted from every log line and error; prints its result as JSON.
    Shared by the benchmark scripts; `what` names the work in the error line."""
    url = os.environ.get("LIVEKIT_URL", "")
    token = os.environ.get("LIVEKIT_TOKEN", "")
    if not url or not token:
        print("LIVEKIT_URL and LIVEKIT_TOKEN must be set", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Redact(token))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    try:
        result = asyncio.run(work(url, token))
    except Exception as error:  # noqa: BLE001 - report every failure as one redacted line
        message = f"{type(error).__name__}: {getattr(error, 'message', None) or error}"
        print(f"{what} failed: {message.replace(token, '[redacted]')}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


def main() -> int:
    args = _parse_args()
    return run(lambda url, token: _publish(args, url, token), "publishing")


if __name__ == "__main__":
    sys.exit(main())

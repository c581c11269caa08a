"""Connect many publishing rooms with the official LiveKit Python SDK, timing each connection.

The Python half of `cargo xtask bench connect`: the same rooms, frames and steps as the Rust
half (`connect-bench run`), so that the time to first media and the memory and threads per
connected room can be compared.

Environment: LIVEKIT_URL, LIVEKIT_TOKENS (join tokens, one per room, separated by whitespace;
each names its own existing room), LIVEKIT_TOKEN (the first of them, for the shared runner).
No token is ever printed.

    python livekit_connect.py --frames FILE --width W --height H --fps F --bitrate BPS \
        --rooms 1,10,50 --settle S

FILE holds raw I420 frames back to back, W*H*3/2 bytes each, loaded once and looped over. The
rooms are joined one after the other; in each a VP8 camera track is published (one layer, no
simulcast, libvpx in software), nobody subscribing. Per connection it times, from the call of
`Room.connect`:

* connect_ms: until `Room.connect` returns;
* publish_ms: until `publish_track` returns (the server confirmed the track);
* first_media_ms: until the publisher's outbound RTP stream of the track has sent a packet
  (`get_rtc_stats`: outbound_rtp.sent.packets_sent > 0). Until then a frame is captured every
  10 ms and the statistics are asked for every 5 ms or so (each answer takes its own time);
  afterwards the room gets F frames per second. The track's maximum frame rate is 100 (one
  frame per 10 ms), so that libwebrtc's source adapter holds no start-up frame back; the steady
  rate is set by the capture schedule.

Whenever the number of rooms reaches one of --rooms, it waits S seconds with every room
publishing, then reads VmRSS and Threads from /proc/self/status; once before the first
connection too. Each connection also notes VmRSS before `connect` and after each step.

Stdout gets one JSON line (the shape the Rust half prints): {"connections": [{"connect_ms",
"publish_ms", "first_media_ms", "rss_kib": [before, connected, published, first media]}...],
"samples": [{"rooms", "rss_kib", "threads"}...], "frames_sent", "frames_dropped",
"disconnected"}. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from livekit import rtc

# The shared runner and token filter (this directory is on the path of a script).
from livekit_publish import _load_frames, _Redact, run

STARTUP_WRITE_INTERVAL = 0.010
STARTUP_POLL_INTERVAL = 0.005
FIRST_MEDIA_WITHIN = 30.0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", required=True, help="raw I420 frames, back to back")
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--fps", type=int, required=True)
    parser.add_argument("--bitrate", type=int, default=100_000, help="maximum bitrate, bit/s")
    parser.add_argument("--rooms", default="1,10,50", help="where to measure, comma-separated")
    parser.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each sample")
    args = parser.parse_args()
    if args.width <= 0 or args.height <= 0 or args.width % 2 or args.height % 2:
        parser.error("width and height must be positive and even (I420)")
    args.rooms = [int(n) for n in args.rooms.split(",")]
    if args.fps <= 0 or args.bitrate <= 0 or not args.rooms or min(args.rooms) <= 0:
        parser.error("fps, bitrate and every --rooms count must be positive")
    return args


def _process_status() -> tuple[int, int]:
    """VmRSS (KiB) and Threads of this process."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)), int(fields.get("Threads", 0))


async def _sent(room: rtc.Room) -> tuple[int, int]:
    """Packets and frames the publisher's outbound video RTP streams have sent."""
    stats = await room.get_rtc_stats()
    packets = frames = 0
    for s in stats.publisher_stats:
        if s.WhichOneof("stats") == "outbound_rtp" and s.outbound_rtp.stream.kind == "video":
            packets += s.outbound_rtp.sent.packets_sent
            frames += s.outbound_rtp.outbound.frames_sent
    return packets, frames


class _Stream:
    """One connected room publishing until told to stop."""

    def __init__(self, room: rtc.Room, source: rtc.VideoSource, frames, started: float) -> None:
        self.room = room
        self.source = source
        self.frames = frames
        self.started = started
        self.index = 0
        self.disconnected = False
        self.closing = False
        room.on("disconnected", self._on_disconnected)

    def _on_disconnected(self, reason) -> None:
        if not self.closing:
            self.disconnected = True
            print(f"a room was disconnected: {reason}", file=sys.stderr)

    def capture(self) -> None:
        frame = self.frames[self.index % len(self.frames)]
        self.source.capture_frame(frame, timestamp_us=round((time.monotonic() - self.started) * 1e6))
        self.index += 1

    async def startup_writer(self) -> None:
        while True:
            self.capture()
            await asyncio.sleep(STARTUP_WRITE_INTERVAL)

    async def publish(self, fps: int, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / fps
        start = loop.time()
        n = 0
        while not stop.is_set() and not self.disconnected:
            due = start + n * interval
            if (delay := due - loop.time()) > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except asyncio.TimeoutError:
                    pass
            if loop.time() - due <= interval:
                self.capture()
            n += 1


async def _connect_all(args: argparse.Namespace, url: str, tokens: list[str]) -> dict:
    frames = _load_frames(args.frames, args.width, args.height)
    rooms = max(args.rooms)
    if len(tokens) < rooms:
        raise ValueError(f"{rooms} rooms need as many tokens, got {len(tokens)}")
    stop = asyncio.Event()
    rss, threads = _process_status()
    samples = [{"rooms": 0, "rss_kib": rss, "threads": threads}]
    connections = []
    streams: list[_Stream] = []
    tasks: list[asyncio.Task] = []
    try:
        for index, token in enumerate(tokens[:rooms]):
            rss_before = _process_status()[0]
            started = time.monotonic()
            room = rtc.Room()
            await room.connect(url, token, rtc.RoomOptions(auto_subscribe=False, dynacast=False))
            connected = time.monotonic() - started
            rss_connected = _process_status()[0]
            source = rtc.VideoSource(args.width, args.height)
            track = rtc.LocalVideoTrack.create_video_track("bench", source)
            options = rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_CAMERA,
                simulcast=False,
                video_codec=rtc.VideoCodec.H264 if args.codec == "h264" else rtc.VideoCodec.VP8,
                video_encoding=rtc.VideoEncoding(
                    max_bitrate=args.bitrate, max_framerate=round(1 / STARTUP_WRITE_INTERVAL)
                ),
                video_encoder=rtc.VideoEncoderBackend.ENCODER_BACKEND_SOFTWARE,
                degradation_preference=rtc.DegradationPreference.MAINTAIN_FRAMERATE_AND_RESOLUTION,
            )
            # Frames go in from the start: libwebrtc encodes as soon as the track can send.
            stream = _Stream(room, source, frames, started)
            streams.append(stream)
            writer = asyncio.create_task(stream.startup_writer())
            try:
                await room.local_participant.publish_track(track, options)
                published = time.monotonic() - started
                rss_published = _process_status()[0]
                while (await _sent(room))[0] == 0:
                    if time.monotonic() - started > FIRST_MEDIA_WITHIN:
                        raise TimeoutError(
                            f"room {index + 1}: no packet went out within {FIRST_MEDIA_WITHIN} s"
                        )
                    await asyncio.sleep(STARTUP_POLL_INTERVAL)
                first_media = time.monotonic() - started
            finally:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            rss_first_media = _process_status()[0]
            print(
                f"room {index + 1:>2}: connected {connected * 1000:6.1f} ms, published "
                f"{published * 1000:6.1f} ms, first packet out {first_media * 1000:6.1f} ms",
                file=sys.stderr,
            )
            connections.append(
                {
                    "connect_ms": connected * 1000,
                    "publish_ms": published * 1000,
                    "first_media_ms": first_media * 1000,
                    "rss_kib": [rss_before, rss_connected, rss_published, rss_first_media],
                }
            )
            tasks.append(asyncio.create_task(stream.publish(args.fps, stop)))
            count = index + 1
            if count in args.rooms:
                await asyncio.sleep(args.settle)
                rss, threads = _process_status()
                print(f"{count} room(s): VmRSS {rss} KiB, {threads} threads", file=sys.stderr)
                samples.append({"rooms": count, "rss_kib": rss, "threads": threads})
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        frames_sent = 0
        for stream in streams:
            frames_sent += (await _sent(stream.room))[1]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            stream.closing = True
            await stream.source.aclose()
            await stream.room.disconnect()
    return {
        "connections": connections,
        "samples": samples,
        "frames_sent": frames_sent,
        # libwebrtc does not count frames it drops for a busy connection per track.
        "frames_dropped": None,
        "disconnected": sum(s.disconnected for s in streams),
    }


async def _work(args: argparse.Namespace, url: str, tokens: list[str]) -> dict:
    # The shared runner filters LIVEKIT_TOKEN from the log; the other tokens too.
    for handler in logging.getLogger().handlers:
        for token in tokens:
            handler.addFilter(_Redact(token))
    try:
        return await _connect_all(args, url, tokens)
    except Exception as error:  # noqa: BLE001 - the message may hold a token
        message = f"{type(error).__name__}: {getattr(error, 'message', None) or error}"
        for token in tokens:
            message = message.replace(token, "[redacted]")
        raise RuntimeError(message) from None


def main() -> int:
    args = _parse_args()
    tokens = os.environ.get("LIVEKIT_TOKENS", "").split()
    return run(lambda url, token: _work(args, url, tokens or [token]), "connecting")


if __name__ == "__main__":
    sys.exit(main())

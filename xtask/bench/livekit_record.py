"""Receive and record every remote track with the official LiveKit Python SDK.

The Python half of `cargo xtask bench record`: joins a room as a subscriber and writes what it
receives, to compare the process's CPU time and peak memory with the program's recorder
(`example-rtc-livekit-join` with RECORD_DIR).

Environment: LIVEKIT_URL, LIVEKIT_TOKEN (a join token for an existing room; never printed).

    python livekit_record.py --out-dir DIR

Every subscribed track gets a stream and a file in DIR, named by the track's sid:

* video: an `rtc.VideoStream` asking for I420 frames (libwebrtc decodes the VP8 stream; a frame
  of another buffer type is converted), each frame's raw I420 bytes appended to `<sid>.i420`;
* audio: an `rtc.AudioStream` at 48 kHz mono (libwebrtc decodes the Opus stream), each frame's
  16-bit PCM samples appended to `<sid>.pcm`.

Stderr gets "recording video <sid>" and "recording audio <sid>" as each track arrives. It runs
until SIGTERM or SIGINT (or --seconds, if given, after the first track), then stops the streams,
closes the files and disconnects. Stdout gets exactly one JSON line: {"video_frames": N,
"video_bytes": B, "width": W, "height": H, "audio_frames": M, "audio_samples": S, "audio_bytes":
A}. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from livekit import rtc

# The same token filter as the publishing script (this directory is on the path of a script).
from livekit_publish import run


class _Counts:
    def __init__(self) -> None:
        self.video_frames = 0
        self.video_bytes = 0
        self.width = 0
        self.height = 0
        self.audio_frames = 0
        self.audio_samples = 0
        self.audio_bytes = 0

    def as_dict(self) -> dict:
        return dict(vars(self))


async def _write_video(stream: rtc.VideoStream, path: str, counts: _Counts) -> None:
    with open(path, "wb") as out:
        async for event in stream:
            frame = event.frame
            if frame.type != rtc.VideoBufferType.I420:
                frame = frame.convert(rtc.VideoBufferType.I420)
            data = frame.data
            out.write(data)
            counts.video_frames += 1
            counts.video_bytes += data.nbytes
            counts.width, counts.height = frame.width, frame.height


async def _write_audio(stream: rtc.AudioStream, path: str, counts: _Counts) -> None:
    with open(path, "wb") as out:
        async for event in stream:
            frame = event.frame
            data = frame.data
            out.write(data)
            counts.audio_frames += 1
            counts.audio_samples += frame.samples_per_channel
            counts.audio_bytes += data.nbytes


async def _record(args: argparse.Namespace, url: str, token: str) -> dict:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    counts = _Counts()
    first_track = asyncio.Event()
    streams: list = []
    writers: list[asyncio.Task] = []

    room = rtc.Room()

    @room.on("track_subscribed")
    def on_track_subscribed(track: rtc.Track, publication, participant) -> None:
        if stop.is_set():
            return
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            stream = rtc.VideoStream(track, format=rtc.VideoBufferType.I420)
            path = os.path.join(args.out_dir, f"{track.sid}.i420")
            writers.append(asyncio.create_task(_write_video(stream, path, counts)))
            kind = "video"
        elif track.kind == rtc.TrackKind.KIND_AUDIO:
            stream = rtc.AudioStream(track, sample_rate=48000, num_channels=1)
            path = os.path.join(args.out_dir, f"{track.sid}.pcm")
            writers.append(asyncio.create_task(_write_audio(stream, path, counts)))
            kind = "audio"
        else:
            return
        streams.append(stream)
        first_track.set()
        print(f"recording {kind} {track.sid} from {participant.identity}", file=sys.stderr)

    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
    try:
        if args.seconds:
            await first_track.wait()
            try:
                await asyncio.wait_for(stop.wait(), args.seconds)
            except asyncio.TimeoutError:
                pass
        else:
            await stop.wait()
        print("stopping", file=sys.stderr)
        # Whatever a writer is waiting for is not written; what it wrote is, and its file closes.
        for writer in writers:
            writer.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        for stream in streams:
            await stream.aclose()
    finally:
        await room.disconnect()
    return counts.as_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True, help="where the files go (must exist)")
    parser.add_argument("--seconds", type=float, default=0, help="stop by itself after this long")
    args = parser.parse_args()
    return run(lambda url, token: _record(args, url, token), "recording")


if __name__ == "__main__":
    sys.exit(main())

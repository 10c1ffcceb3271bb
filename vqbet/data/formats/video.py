"""mp4 frames through PyAV: read the frames at given timestamps (seeking, then decoding forward),
and write frames (LeRobot's videos). Imported only when a camera is asked for."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from vqbet.data.formats.common import optional


def read_frames(part: tuple[str, float, float], local: np.ndarray) -> np.ndarray:
    """Frames `local` (sorted, unique) of one episode stored in video `part` = (path, the
    episode's first timestamp in the file, fps) -> (len(local), H, W, 3) uint8."""
    av = optional("av", "lerobot")
    path, start, fps = part
    times = start + np.asarray(local, dtype=np.float64) / fps
    half = 0.5 / fps
    frames: list[np.ndarray] = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        container.seek(max(0, int((times[0] - half) / stream.time_base)), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            while len(frames) < len(times) and t >= times[len(frames)] - half:
                if t > times[len(frames)] + half:
                    raise ValueError(
                        f"{path}: no frame at {times[len(frames)]:.4f} s (next one at {t:.4f} s)"
                    )
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == len(times):
                break
    if len(frames) < len(times):
        raise ValueError(f"{path}: the video ends before {times[len(frames)]:.4f} s")
    return np.stack(frames)


def frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of a video's first stream."""
    av = optional("av", "lerobot")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return int(stream.height), int(stream.width)


ENCODING = {"codec": "libx264", "pix_fmt": "yuv444p", "options": {"crf": "0", "bf": "0"}}
"""How vqbet writes camera videos: lossless H.264 in 4:4:4 YUV (one key frame a second), for
fidelity: frames come back within 2/255 (the RGB <-> YUV rounding), at about the size of LeRobot's
default AV1 at crf 30, which is off by up to 250/255 (benchmarks/bench_video.py, docs/data.md). No
B-frames: decoding order is display order, so files join (LeRobot's concat) without timestamp
clashes."""


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: int,
    codec: str = ENCODING["codec"],
    pix_fmt: str = ENCODING["pix_fmt"],
    options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB frames (H, W, 3) uint8 into an mp4: by default `ENCODING`, a key frame every
    `fps` frames (`options` replace the codec options, e.g. {"crf": "30", "g": "2"})."""
    av = optional("av", "lerobot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = None
        for index, image in enumerate(frames):
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = pix_fmt
                default = {**ENCODING["options"], "g": str(fps)} if codec == ENCODING["codec"] else {}
                stream.options = dict(default if options is None else options)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path


def concat_videos(parts: list[Path], out: str | os.PathLike) -> Path:
    """Join mp4s of the same encoding into `out` without re-encoding (ffmpeg's concat demuxer,
    packets copied, timestamps continued), as LeRobot joins its episodes' videos."""
    av = optional("av", "lerobot")
    out = Path(out)
    listing = out.with_name(out.name + ".ffconcat")
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file '{Path(p).resolve()}'\n" for p in parts))
    try:
        with (
            av.open(str(listing), mode="r", format="concat", options={"safe": "0"}) as source,
            av.open(str(out), mode="w") as target,
        ):
            video = source.streams.video[0]
            stream = target.add_stream_from_template(template=video, opaque=True)
            stream.time_base = video.time_base
            for packet in source.demux(video):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = stream
                target.mux(packet)
    finally:
        listing.unlink(missing_ok=True)
    return out

"""``video`` source: frames decoded from a video file with PyAV (FFmpeg libraries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud3d.errors import Cloud3dError

from .source import FrameSource, Geometry, SourceExhausted


class VideoSource(FrameSource):
    """Decode a gameplay recording frame by frame.

    Args:
        path: video file (anything FFmpeg reads: mp4, mkv, webm...).
        fps: if given, sample the video at this rate by presentation time
            (e.g. ``fps=2`` keeps the first frame at or after each 0.5 s
            step); ``None`` hands out every decoded frame.

    Frames are converted to 8-bit RGB (``rgb24``). The file is read as fast
    as the recorder asks (``realtime`` is False); ``skip(seconds)`` skips
    that much video time.
    """

    kind = "video"
    realtime = False

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise Cloud3dError(f"no such video file: {self.path}")
        if fps is not None and fps <= 0:
            raise Cloud3dError("--fps must be positive")
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as exc:
            raise Cloud3dError(f"cannot read video {self.path}: {exc}") from None
        self._frames = self._container.decode(self._stream)
        ctx = self._stream.codec_context
        if ctx.width and ctx.height:
            self.geometry = Geometry(0, 0, int(ctx.width), int(ctx.height))
        self.fps = fps
        self._next_t = 0.0
        self._av_version = av.__version__

    def _decode_next(self):
        import av

        try:
            return next(self._frames)
        except StopIteration:
            raise SourceExhausted from None
        except av.error.FFmpegError as exc:
            raise Cloud3dError(f"cannot decode video {self.path}: {exc}") from None

    def _time(self, frame) -> float:
        return float(frame.time) if frame.time is not None else self._next_t

    def skip(self, seconds: float) -> None:
        self._next_t = max(self._next_t, seconds)

    def grab(self) -> np.ndarray:
        while True:
            frame = self._decode_next()
            t = self._time(frame)
            if t + 1e-6 < self._next_t:
                continue
            if self.fps is not None:
                self._next_t += 1.0 / self.fps
                while self._next_t <= t:
                    self._next_t += 1.0 / self.fps
            rgb = frame.to_ndarray(format="rgb24")
            self.geometry = Geometry(0, 0, rgb.shape[1], rgb.shape[0])
            return rgb

    def describe(self) -> dict:
        return {"kind": self.kind, "synthetic": False, "path": str(self.path),
                "codec": self._stream.codec_context.name, "pyav": self._av_version}

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None

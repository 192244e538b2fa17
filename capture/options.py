"""What one capture run is asked to do: :class:`RecordOptions`, checked in one place.

It imports nothing heavy, so the CLI can build its options from it at start-up.
:func:`capture.recorder.record` takes a source, a destination and one ``RecordOptions``;
``capture/cli.py`` builds its click options for every recording command from one table whose
defaults come from this class, so a setting has one name and one default everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from cloud3d.errors import Cloud3dError

POLICIES = ("wait", "drop")


@dataclass(frozen=True)
class FilterConfig:
    """Frame filter thresholds (see :mod:`capture.filters`; values on the 0..255 scale).

    Set ``drop_uniform`` / ``drop_duplicates`` False to keep such frames.
    """

    drop_uniform: bool = True
    uniform_std: float = 3.0
    black_mean: float = 16.0
    drop_duplicates: bool = True
    dup_mad: float = 0.5
    step: int = 4


@dataclass(frozen=True)
class RecordOptions:
    """Settings of one capture run. Times in seconds.

    Attributes:
        resolutions: any of ``1080p``, ``720p``, ``native`` (``"720p,1080p"`` is split too).
        fps: target grabs per second (``None``: as fast as possible).
        count: stop after this many frames are kept (written).
        duration: stop after this many seconds of capture (after warm-up).
        warmup: seconds skipped before capturing (live sources wait; video and
            synthetic sources skip that much content).
        fit: ``error`` | ``scale`` | ``crop`` | ``pad`` for non-16:9 sources.
        filters: drop thresholds for uniform and repeated frames.
        writers, queue_size: PNG writers and how many kept frames may wait for them.
        policy: ``wait`` or ``drop`` when the queue is full.
        writer_kind: ``process`` (default; fpng holds the GIL, see capture.writer) or ``thread``.
        encoder, level: PNG encoder (``fpng`` or ``zlib``) and zlib level 0..9.
        progress: show a tqdm bar on stderr.
        stall_timeout: live sources only: end the capture when no frame has been kept for
            this many seconds (the app froze or shows one still image); the summary then
            has ``stalled=True``. ``None``: wait for as long as it takes.
        scene: what the source shows (a game's track or map); written to every row's
            ``scene`` column so that ``cloud3d split --group scene`` can keep scenes apart.
    """

    resolutions: Sequence[str] | str = ("native",)
    fps: float | None = None
    count: int | None = None
    duration: float | None = None
    warmup: float = 0.0
    fit: str = "error"
    filters: FilterConfig = field(default_factory=FilterConfig)
    writers: int = 2
    queue_size: int = 8
    policy: str = "wait"
    writer_kind: str = "process"
    encoder: str = "fpng"
    level: int = 1
    progress: bool = True
    stall_timeout: float | None = None
    scene: str | None = None

    def check(self, source_kind: str) -> None:
        """Raise :class:`Cloud3dError` naming the first bad setting (the CLI flag's name)."""
        if self.policy not in POLICIES:
            raise Cloud3dError(f"unknown queue policy {self.policy!r}: use wait or drop")
        from .writer import KINDS  # numpy and the PNG encoders: not at `cloud3d --help` time

        if self.writer_kind not in KINDS:
            raise Cloud3dError(f"unknown writer kind {self.writer_kind!r}: use process or thread")
        if self.fps is not None and self.fps <= 0:
            raise Cloud3dError("--fps must be positive")
        if self.count is not None and self.count < 1:
            raise Cloud3dError("--count must be at least 1")
        if self.duration is not None and self.duration <= 0:
            raise Cloud3dError("--duration must be positive")
        if self.stall_timeout is not None and self.stall_timeout <= 0:
            raise Cloud3dError("--stall-timeout must be positive")
        if self.count is None and self.duration is None and source_kind != "video":
            raise Cloud3dError("say when to stop: give --count N or --duration SECONDS")

    def requested(self) -> tuple[int, float]:
        """``(frames, seconds)`` the run was asked for: ``count``, else ``duration * fps``
        (0 if neither bounds it); seconds is ``duration`` when it, not a count, bounds the run."""
        count, duration, fps = self.count, self.duration, self.fps
        frames = count if count is not None else int(duration * fps) if duration and fps else 0
        return frames, float(duration) if count is None and duration else 0.0

    def settings(self, filters: FilterConfig) -> dict:
        """The settings line of runs.jsonl (keys in their historical order)."""
        return dict(
            fps=self.fps, count=self.count, duration=self.duration, warmup=self.warmup, fit=self.fit,
            policy=self.policy, scene=self.scene, writers=self.writers, writer_kind=self.writer_kind,
            queue_size=self.queue_size, encoder=self.encoder, level=self.level,
            filters=asdict(filters))

"""Plain helpers shared by the tests (fixtures live in ``conftest.py``).

Test modules import from here, never from each other or from ``conftest``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.robust.procs import alive, child_pids  # noqa: F401 - the tests' import point
from cloud3d.imageio import write_png
from cloud3d_dataset.manifest import index_dataset

#: the ``cloud3d`` command as a subprocess argument list (same interpreter, this checkout)
CLI: tuple[str, ...] = (sys.executable, "-m", "cloud3d.cli")

#: the repository root
ROOT = Path(__file__).resolve().parents[1]

#: bench test image size: >= 161 px so that MS-SSIM uses all five scales
H, W = 168, 176


def cli_argv(*args: object) -> list[str]:
    """``cloud3d ARGS...`` as an argument list for :mod:`subprocess`."""
    return [*CLI, *map(str, args)]


def make_game_like_frame(h: int, w: int, seed: int, t: float = 0.0) -> np.ndarray:
    """A small deterministic 'rendered' frame: gradient sky, textured ground, a moving box."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    horizon = h // 2
    ys = np.linspace(0, 1, horizon)[:, None]
    img[:horizon, :, 0] = (90 + 60 * ys).astype(np.uint8)
    img[:horizon, :, 1] = (140 + 60 * ys).astype(np.uint8)
    img[:horizon, :, 2] = 230
    tex = rng.integers(0, 40, size=(h - horizon, w), dtype=np.int16)
    img[horizon:, :, 1] = np.clip(110 + tex, 0, 255).astype(np.uint8)
    img[horizon:, :, 0] = np.clip(60 + tex // 2, 0, 255).astype(np.uint8)
    x0 = int((0.1 + 0.6 * (t % 1.0)) * w)
    img[h // 3 : h // 3 + h // 6, x0 : x0 + w // 8] = (200, 40, 40)
    return img


def make_dataset(root: Path, apps=("alpha", "beta"), n: int = 3, h: int = H, w: int = W,
                 res: str = "720p") -> Path:
    """``n`` test frames per app and one train frame, ``h`` x ``w``, in ``{app}-{res}`` groups
    (small frames in a ``720p`` group keep tests fast; ``cloud3d verify`` flags their size)."""
    for a, app in enumerate(apps):
        for i in range(n):
            write_png(root / "test" / f"{app}-{res}" / f"{i}.png", make_game_like_frame(h, w, 10 * a + i, i / n))
    write_png(root / "train" / f"{apps[0]}-{res}" / "99.png", make_game_like_frame(h, w, 99))
    index_dataset(root, progress=False)
    return root


#: capture clock of the first grab of :func:`write_capture` (epoch seconds, UTC)
CAPTURE_T0 = 1_700_000_000.0


class CaptureFolder:
    """A capture folder ``ROOT/APP/`` written by capture's own writer, as the recorder writes it.

    Each kept frame's PNGs come from :func:`capture.writer.write_frame` (atomic, hashed) and
    its row from :class:`capture.framelog.FrameLog`: frames.csv has the recorder's columns
    (``status``, ISO-8601 ``capture_time``, ``file_{res}``...), the one dialect the dataset
    stage reads. The one difference from a recording is the clock: the test sets each grab's
    capture time (the recorder reads the wall clock, which the split's time blocks would see
    as one burst). Use as a context manager; :meth:`add` one grab at a time.
    """

    def __init__(self, root: Path, app: str) -> None:
        from capture.framelog import FrameLog

        self.app_dir = Path(root) / app
        self.app_dir.mkdir(parents=True, exist_ok=True)
        self.log = FrameLog(self.app_dir)
        self.index, _ = self.log.reconcile()
        self.grabs = 0

    def add(self, rgb: np.ndarray, when: float, resolutions=("native",), scene: str = "",
            dropped: str | None = None) -> int | None:
        """Log one grab of ``rgb`` ``(H, W, 3) uint8`` taken at ``when`` (epoch seconds): kept
        (its PNGs written at ``resolutions``; returns its frame index) or, with ``dropped=REASON``,
        logged as dropped without files (returns None)."""
        from datetime import UTC, datetime

        from capture.writer import write_frame

        h, w = rgb.shape[:2]
        row = {"run": "test", "grab": self.grabs, "source": "synthetic", "synthetic": 1,
               "capture_time": datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds"),
               "scene": scene, "x": 0, "y": 0, "width": w, "height": h}
        self.grabs += 1
        if dropped is not None:
            self.log.append(row | {"status": "dropped", "reason": dropped})
            return None
        fields, _enc, _rsz, _n = write_frame(self.app_dir, rgb, self.index, resolutions, "error",
                                             "fpng", 1)
        self.log.append(row | fields | {"index": self.index, "status": "kept"})
        self.index += 1
        return self.index - 1

    def __enter__(self) -> CaptureFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.log.close()


def write_capture(root: Path, app: str, n: int, size: tuple[int, int] = (128, 72),
                  resolutions=("native",), fps: float = 2.0, seed: int = 0,
                  drop_every: int = 0) -> Path:
    """``n`` grabs of capture's synthetic scene (``size`` = (width, height), at least 64x48),
    written by :class:`CaptureFolder` at ``resolutions``; grab ``i`` shows scene time ``i / fps``
    and is captured at ``CAPTURE_T0 + i / fps``. With ``drop_every=k`` every k-th grab is logged
    as a dropped duplicate. Returns the app folder."""
    from capture.synthetic import SyntheticSource

    src = SyntheticSource(*size, seed=seed, fps=fps)
    with CaptureFolder(root, app) as cap:
        for i in range(n):
            drop = drop_every and i % drop_every == drop_every - 1
            cap.add(src.grab(), CAPTURE_T0 + i / fps, resolutions, dropped="duplicate" if drop else None)
    return cap.app_dir


def rows(path: Path) -> list[dict]:
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    out = [dict(r) for r in con.execute("SELECT * FROM results ORDER BY id")]
    con.close()
    return out


def plugin_cli_argv(args: list[str]) -> list[str]:
    """``cloud3d ARGS...`` with the test codecs of ``plugin_codecs.py`` registered (``test-quant``)."""
    code = (
        "import sys; sys.path.insert(0, {tests!r});"
        "import baselines.codecs.registry as r; r.REGISTRY.builtin += ('plugin_codecs',);"
        "from cloud3d.cli import main; main({args!r})"
    ).format(tests=str(ROOT / "tests"), args=args)
    return [sys.executable, "-c", code]


def wait_rows(res: Path, n: int, proc: subprocess.Popen, limit: float = 60) -> None:
    """Wait until the results file ``res`` holds ``n`` rows; fail if ``proc`` ends or ``limit`` s pass."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if res.exists():
            try:
                con = sqlite3.connect(res)
                k = con.execute("SELECT count(*) FROM results").fetchone()[0]
                con.close()
                if k >= n:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    raise AssertionError("bench made no progress")




def tiny_model(arch: str, seed: int = 0, prepare=None):
    """A small seeded learned model, entropy tables built, in eval mode; ``prepare(model, seed)``
    runs before the tables are built (e.g. to perturb weights)."""
    import torch

    from models.architectures import create_model

    torch.manual_seed(seed)
    m = create_model(arch, **({"N": 32, "M": 48} if not arch.startswith("c2f") else {}))
    if prepare is not None:
        prepare(m, seed)
    m.update(force=True)
    return m.eval()


def loud_latents(m, seed: int = 0) -> None:
    """A ``tiny_model`` ``prepare`` hook: scale the last layer of each analysis transform by
    20 and of each entropy-parameter net by 30, so that an untrained model quantizes a frame
    to many non-zero symbols over many CDF tables (its plain init rounds nearly all to 0)."""
    import torch

    with torch.no_grad():
        for name in ("g_a", "h_a", "h_a1", "h_a2"):
            seq = getattr(m, name, None)
            if seq is not None:
                seq[-1].weight.mul_(20)
                seq[-1].bias.mul_(20)
        for net in m.param_nets:
            for head in getattr(net, "heads", [net]):  # each pass of a progressive net
                convs = [x for x in head.modules()
                         if isinstance(x, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
                convs[-1].weight.mul_(30)
                convs[-1].bias.mul_(30)


def tiny_gain_model(seed: int = 0):
    """A real variable-rate model, c2f-xsmall-pruned-vr with the two-lambda ladder 0.01, 0.04
    (initial gains on y 1/sqrt(2) and sqrt(2)), loud latents, tables built, eval mode."""
    import torch

    from models.architectures import create_model

    torch.manual_seed(seed)
    m = create_model("c2f-xsmall-pruned-vr", lambdas=[0.01, 0.04])
    loud_latents(m, seed)
    m.update(force=True)
    return m.eval()


def assert_gone(pids, grace: float = 5.0) -> None:
    """Every process in ``pids`` ends within ``grace`` seconds; survivors are named."""
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = {}
    for p in pids:
        if alive(p):
            try:
                survivors[p] = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
    assert not survivors, f"processes left behind: {survivors}"


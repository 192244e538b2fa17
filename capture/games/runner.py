"""``capture_game``: run a recipe unattended until every resolution has its frames.

For each resolution in turn the game is started on a private Xvfb of exactly that size
(frames are rendered natively, never resized), one scene at a time:

1. launch the game on the scene and wait for its window (``window_timeout``);
2. wait until gameplay is on screen (:func:`capture.games.ready.wait_until_ready`), then
   ``settle`` seconds;
3. record up to the scene's due frames with :func:`capture.recorder.record`, rows labelled
   with the scene, stopping early if no frame was kept for ``stall_timeout`` seconds;
4. stop the game and its Xvfb (always: also on errors, Ctrl-C and SIGTERM).

A visit that fails (no window, never ready, a crash, a stall, a wrong window size) is
logged and counted, and the next scene follows; a scene that failed ``max_failures``
times is given up for the rest of the run and the others take over its share. Every
visit appends one JSON line to ``OUT/APP/scenes.jsonl`` (outcome, timings, frames kept and
dropped, the game's last output on failure). A re-run reads ``frames.csv`` and goes on
to the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cloud3d.errors import Cloud3dError, describe_os_error
from cloud3d.provenance import utc_now
from cloud3d.resolutions import RESOLUTIONS

from ..launch import AppExited, LaunchSource
from ..options import RecordOptions
from ..recorder import record
from ..xdisplay import WindowGone
from . import home as homes
from .plan import ScenePlan, kept_by_scene, scene_order
from .ready import NotReady, make_watcher, wait_until_ready
from .recipe import GameRecipe, Scene

#: visit outcomes that are failures (``ok`` and ``interrupted`` are not)
FAILURES = ("no_window", "not_ready", "crashed", "stalled", "wrong_size")


@dataclass
class Visit:
    """One start of the game on one scene (a line of ``scenes.jsonl``). Times in seconds."""

    run: str
    recipe: str
    scene: str
    resolution: str
    seed: int
    variants: dict[str, str]
    started: str
    due: int
    outcome: str = "ok"
    message: str = ""
    window_s: float | None = None
    ready_s: float | None = None
    capture_s: float = 0.0
    wall_s: float = 0.0
    kept: int = 0
    grabbed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    log_tail: str = ""


@dataclass
class GameSummary:
    """What :func:`capture_game` did: per resolution ``{"target", "before", "after",
    "by_scene"}``, the visits, failures by outcome, and whether it was interrupted."""

    recipe: str
    app_dir: str
    resolutions: dict[str, dict] = field(default_factory=dict)
    visits: list[Visit] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    given_up: dict[str, list[str]] = field(default_factory=dict)
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        """True when every resolution reached its target."""
        return all(r["after"] >= r["target"] for r in self.resolutions.values())

    def to_dict(self) -> dict:
        return asdict(self) | {"complete": self.complete}

    def to_text(self) -> str:
        lines = [f"capture game {self.recipe} -> {self.app_dir}  ({self.elapsed_s / 60:.1f} min, "
                 f"{len(self.visits)} visits)"]
        for res, r in self.resolutions.items():
            scenes = ", ".join(f"{s or '(none)'} {n}" for s, n in sorted(r["by_scene"].items()))
            lines.append(f"  {res}: {r['after']} of {r['target']} frames "
                         f"(+{r['after'] - r['before']} now); by scene: {scenes or '-'}")
        fails = ", ".join(f"{k}={v}" for k, v in sorted(self.failures.items())) or "none"
        lines.append(f"  failures: {fails}")
        for res, names in self.given_up.items():
            lines.append(f"  gave up at {res}: {', '.join(names)}")
        return "\n".join(lines)


def _visit_seed(seed: int, res: str, scene: str, have: int) -> int:
    return zlib.crc32(f"{seed}/{res}/{scene}/{have}".encode()) & 0x7FFFFFFF


def _append_visit(app_dir: Path, visit: Visit) -> None:
    try:
        with open(app_dir / "scenes.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(visit)) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise Cloud3dError(describe_os_error(exc, app_dir / "scenes.jsonl")) from None


def _failure_path(app_dir: Path, visit: Visit, suffix: str) -> Path:
    stem = f"{visit.started[:19].replace(':', '')}-{visit.resolution}-{visit.scene}"
    return app_dir / "logs" / f"{stem}{suffix}"


def _keep_log(app_dir: Path, visit: Visit, log_path: Path) -> None:
    """Keep a failed visit's game output under ``OUT/APP/logs/`` (others are deleted)."""
    dest = _failure_path(app_dir, visit, ".log")
    with contextlib.suppress(OSError):
        dest.parent.mkdir(exist_ok=True)
        os.replace(log_path, dest)


def _keep_picture(app_dir: Path, visit: Visit, rgb) -> None:
    """Keep what a game that never got ready showed last (480 px wide) next to its log."""
    if rgb is None:
        return
    from PIL import Image

    img = Image.fromarray(rgb)
    img.thumbnail((480, 480))
    dest = _failure_path(app_dir, visit, ".png")
    with contextlib.suppress(OSError):
        dest.parent.mkdir(exist_ok=True)
        img.save(dest)


@dataclass
class GameOptions:
    """Settings of :func:`capture_game` beyond the recipe (``None``: the recipe's value)."""

    count: int = 1000
    resolutions: tuple[str, ...] = ("1080p", "720p")
    scenes: list[str] | None = None
    seed: int = 0
    fps: float | None = None
    stall_timeout: float | None = None
    max_failures: int = 2
    writers: int = 2
    progress: bool = True
    say: object = None  # callable(str) for one line per visit (default: nothing)


def _run_visit(recipe: GameRecipe, scene: Scene, res: str, due: int, out_dir: Path,
               home: Path, visit: Visit, opts: GameOptions, stop) -> Path:
    """Start, wait, record, stop; fills ``visit`` (outcome, timings). Returns the log path."""
    size = RESOLUTIONS[res]
    command = homes.wrap_command(recipe.command_for(scene, size, home, visit.seed), recipe)
    recipe.prepare_home(home)
    homes.hand_over(home, recipe)
    log_path = out_dir / recipe.name / f".visit-{os.getpid()}.log"
    log_path.unlink(missing_ok=True)
    watcher = make_watcher(recipe, home, log_path)
    t0 = time.monotonic()
    try:
        with LaunchSource(command, size=size, timeout=recipe.window_timeout, log_path=log_path,
                          env=recipe.env_for(home)) as src:
            visit.window_s = round(time.monotonic() - t0, 2)
            geo = src.geometry
            if (geo.width, geo.height) != size:
                visit.outcome = "wrong_size"
                visit.message = f"window is {geo.width}x{geo.height}, not {size[0]}x{size[1]}"
                return log_path
            try:
                visit.ready_s = round(wait_until_ready(src, recipe, watcher, t0, stop), 2)
                if recipe.settle:
                    time.sleep(recipe.settle)
                summary = record(src, out_dir, recipe.name, RecordOptions(
                    resolutions=(res,), fps=opts.fps or recipe.fps, count=due,
                    stall_timeout=opts.stall_timeout or recipe.stall_timeout,
                    writers=opts.writers, progress=opts.progress, scene=scene.name), stop=stop)
            except NotReady as exc:
                visit.outcome, visit.message = "not_ready", str(exc)
                _keep_picture(out_dir / recipe.name, visit, exc.frame)
                return log_path
            except (AppExited, WindowGone) as exc:
                visit.outcome, visit.message = "crashed", str(exc)
                return log_path
            visit.capture_s = round(summary.elapsed_s, 2)
            visit.grabbed, visit.dropped = summary.grabbed, summary.dropped
            if summary.interrupted or summary.stopped_because == "stop requested":
                visit.outcome = "interrupted"
            elif summary.stalled:
                visit.outcome, visit.message = "stalled", summary.stopped_because
    except (AppExited, WindowGone) as exc:
        visit.outcome, visit.message = "crashed", str(exc)
    except KeyboardInterrupt:
        visit.outcome = "interrupted"
    except Cloud3dError as exc:
        if visit.window_s is not None:
            raise  # not a start-up failure of the game: a disk error or the like
        visit.outcome, visit.message = "no_window", str(exc)
    finally:
        visit.wall_s = round(time.monotonic() - t0, 2)
    return log_path


def _capture_resolution(recipe: GameRecipe, res: str, scenes: list[Scene], out_dir: Path,
                        home: Path, opts: GameOptions, summary: GameSummary, run: str,
                        stop) -> None:
    app_dir = out_dir / recipe.name
    by_name = {s.name: s for s in scenes}
    plan = ScenePlan(opts.count, scene_order(list(by_name), opts.seed),
                     kept_by_scene(app_dir, res))
    state = {"target": opts.count, "before": plan.total(), "after": plan.total(), "by_scene": {}}
    summary.resolutions[res] = state
    fails: Counter[str] = Counter()
    say = opts.say or (lambda _line: None)
    while not summary.interrupted and (nxt := plan.next_visit()) is not None:
        name, due = nxt
        seed = _visit_seed(opts.seed, res, name, plan.have[name])
        visit = Visit(run=run, recipe=recipe.name, scene=name, resolution=res, seed=seed,
                      variants=recipe.choose_variants(seed), started=utc_now().isoformat(),
                      due=due)
        before = kept_by_scene(app_dir, res)[name]
        say(f"{recipe.name} {res} {name}: {due} frames due (have {plan.have[name]})")
        log_path = _run_visit(recipe, by_name[name], res, due, out_dir, home, visit, opts, stop)
        visit.kept = kept_by_scene(app_dir, res)[name] - before
        plan.record(name, visit.kept)
        if visit.outcome in FAILURES:
            fails[name] += 1
            summary.failures[visit.outcome] = summary.failures.get(visit.outcome, 0) + 1
            visit.log_tail = _tail(log_path)
            _keep_log(app_dir, visit, log_path)
            if fails[name] >= opts.max_failures:
                plan.give_up(name)
                summary.given_up.setdefault(res, []).append(name)
        else:
            Path(log_path).unlink(missing_ok=True)
        summary.interrupted = visit.outcome == "interrupted"
        summary.visits.append(visit)
        _append_visit(app_dir, visit)
        say(f"{recipe.name} {res} {name}: {visit.outcome}, kept {visit.kept} in {visit.wall_s:.0f} s"
            + (f" ({visit.message})" if visit.message else ""))
    state["after"] = plan.total()
    state["by_scene"] = dict(plan.have)


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def capture_game(recipe: GameRecipe, out_dir: str | os.PathLike, options: GameOptions | None = None,
                 stop=None) -> GameSummary:
    """Capture ``options.count`` frames per resolution of ``recipe``'s game into ``out_dir/NAME``.

    Args:
        recipe: the game (see :mod:`capture.games.builtin` and :func:`capture.games.registry.get`).
        out_dir: capture root; frames go to ``out_dir/{recipe.name}/{res}/{index:06d}.png``.
        options: counts, resolutions, scenes, seed... (:class:`GameOptions`).
        stop: optional ``threading.Event`` that ends the run cleanly.

    Returns a :class:`GameSummary`; ``complete`` is False when scenes were given up before
    the target was reached (the frames kept are kept; a re-run continues).

    Raises:
        Cloud3dError: the game is not installed, bad options, or the output is unusable.
    """
    opts = options or GameOptions()
    if opts.count < 1:
        raise Cloud3dError("--count must be at least 1")
    for res in opts.resolutions:
        if res not in RESOLUTIONS:
            raise Cloud3dError(f"bad resolution {res!r} for a game capture: use "
                               f"{' or '.join(RESOLUTIONS)} (the game renders at that size)")
    if len(set(opts.resolutions)) != len(opts.resolutions):
        raise Cloud3dError("a resolution is listed twice")
    recipe.find_binary()
    scenes = recipe.pick_scenes(opts.scenes)
    home = homes.game_home(recipe)
    app_dir = Path(out_dir) / recipe.name
    try:
        app_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Cloud3dError(f"output folder not usable: {describe_os_error(exc, app_dir)}") from None
    run = utc_now().strftime("%Y%m%dT%H%M%SZ")
    summary = GameSummary(recipe=recipe.name, app_dir=str(Path(out_dir) / recipe.name))
    t0 = time.perf_counter()
    try:
        for res in opts.resolutions:
            if summary.interrupted:
                break
            _capture_resolution(recipe, res, scenes, Path(out_dir), home, opts, summary, run, stop)
    finally:
        summary.elapsed_s = time.perf_counter() - t0
    return summary

"""``cloud3d capture game``: the recipe machinery on a real Xvfb with a stand-in X game.

The stand-in (``tests/plugin_games.py``) is ``capture.showwindow`` in a real window; its
scenes load, freeze, crash, never start or open a wrong-sized window on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, assert_gone, child_pids, cli_argv
from plugin_games import STANDIN

from capture.games.plan import ScenePlan, fair_targets, kept_by_scene, scene_order
from capture.games.registry import all_games, get_game
from capture.games.runner import GameOptions, capture_game
from capture.showwindow import pattern_number
from capture.verify import check_capture
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_image_rgb

pytestmark = pytest.mark.xvfb

ENV = {"CLOUD3D_GAME_MODULES": "plugin_games",
       "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}


@pytest.fixture(autouse=True)
def _private_game_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUD3D_GAME_HOME", str(tmp_path / "homes"))


def _frames(app_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(app_dir / "frames.csv", dtype={"reason": str, "scene": str})
    return df[df["status"] == "kept"]


def _visits(app_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (app_dir / "scenes.jsonl").read_text().splitlines()]


# -- planning (pure) -------------------------------------------------------------------------


def test_fair_targets_split_evenly_and_respect_what_scenes_hold():
    assert fair_targets(7, {}, ["a", "b", "c"]) == {"a": 3, "b": 2, "c": 2}
    # b already holds more than an even share: it keeps that, the others share the rest
    assert fair_targets(10, {"b": 6}, ["a", "b", "c"]) == {"a": 2, "b": 6, "c": 2}
    assert sum(fair_targets(1000, {"x": 3}, list("abcdefghij")).values()) == 1000


def test_scene_plan_cycles_gives_up_and_redistributes():
    plan = ScenePlan(6, ["a", "b", "c"], {})
    assert plan.next_visit() == ("a", 2)
    assert plan.next_visit() == ("b", 2)
    plan.record("b", 1)  # b failed after one frame
    plan.give_up("b")  # ... and is given up: a and c share the 5 left
    assert plan.next_visit() == ("c", 2)  # a, earlier in the order, takes the odd frame
    plan.record("c", 2)
    assert plan.next_visit() == ("a", 3)
    plan.record("a", 3)
    assert plan.next_visit() is None and plan.total() == 6
    assert scene_order(["a", "b", "c"], 0) == scene_order(["a", "b", "c"], 0)
    assert sorted(scene_order(list("abcdef"), 1)) == list("abcdef")


# -- real runs of the stand-in -----------------------------------------------------------------


def test_scenes_cycle_with_fair_shares_and_a_scene_column(xvfb_binary, tmp_path):
    opts = GameOptions(count=7, resolutions=("720p",), scenes=["meadow", "canyon", "harbour"],
                       seed=3, progress=False)
    summary = capture_game(STANDIN, tmp_path / "caps", opts)
    app_dir = tmp_path / "caps" / "standin"
    assert summary.complete and not summary.failures
    kept = _frames(app_dir)
    counts = kept["scene"].value_counts().to_dict()
    assert sorted(counts.values()) == [2, 2, 3] and set(counts) == {"meadow", "canyon", "harbour"}
    order = scene_order(["meadow", "canyon", "harbour"], 3)
    assert counts[order[0]] == 3  # the seeded order decides who supplies the extra frame
    assert [v["scene"] for v in _visits(app_dir)] == order
    assert all(v["outcome"] == "ok" and v["ready_s"] > 0.9 for v in _visits(app_dir))
    for _, row in kept.iterrows():  # real 1280x720 frames of the stand-in's numbered patterns
        rgb, _ = read_image_rgb(app_dir / row["file_720p"])
        assert rgb.shape == (720, 1280, 3)
        assert pattern_number(rgb) >= 8  # after its 1 s loading screen at 8 frames/s
    assert all(v == [] for v in check_capture(app_dir).values())


def test_failing_scenes_are_logged_counted_and_the_others_take_over(xvfb_binary, tmp_path, run_cli):
    r = run_cli("capture", "game", "standin", "--out", tmp_path, "--count", "40", "--res", "720p",
                "--scenes", "meadow,frozen,crashy,sleepy,tiny", "--max-failures", "1",
                "--no-progress", "--json", env=ENV, timeout=400)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    app_dir = tmp_path / "standin"
    outcomes = {v["scene"]: v["outcome"] for v in _visits(app_dir) if v["outcome"] != "ok"}
    assert outcomes == {"frozen": "stalled", "crashy": "crashed", "sleepy": "not_ready",
                        "tiny": "wrong_size"}
    assert summary["failures"] == {"stalled": 1, "crashed": 1, "not_ready": 1, "wrong_size": 1}
    assert sorted(summary["given_up"]["720p"]) == ["crashy", "frozen", "sleepy", "tiny"]
    counts = _frames(app_dir)["scene"].value_counts().to_dict()
    assert sum(counts.values()) == 40 and summary["complete"]
    assert 1 <= counts["frozen"] < 8 and counts.get("sleepy", 0) == 0  # kept what they gave
    assert counts["meadow"] == 40 - sum(n for s, n in counts.items() if s != "meadow")
    for v in _visits(app_dir):
        if v["outcome"] != "ok":  # each failure keeps the game's output
            assert v["log_tail"] and v["message"]
    assert len(list((app_dir / "logs").glob("*.log"))) == 4
    assert len(list((app_dir / "logs").glob("*-720p-sleepy.png"))) == 1  # its loading screen
    assert "crashing (exit status 3)" in next(v for v in _visits(app_dir)
                                              if v["scene"] == "crashy")["log_tail"]
    assert all(v == [] for v in check_capture(app_dir).values())


def test_a_rerun_continues_to_the_target(xvfb_binary, tmp_path):
    opts = dict(resolutions=("720p",), scenes=["meadow", "canyon"], progress=False)
    first = capture_game(STANDIN, tmp_path, GameOptions(count=4, **opts))
    assert first.resolutions["720p"]["after"] == 4
    again = capture_game(STANDIN, tmp_path, GameOptions(count=4, **opts))
    assert again.visits == [] and again.complete  # nothing due
    more = capture_game(STANDIN, tmp_path, GameOptions(count=8, **opts))
    assert more.resolutions["720p"] | {"by_scene": None} == {
        "target": 8, "before": 4, "after": 8, "by_scene": None}
    kept = _frames(tmp_path / "standin")
    assert sorted(kept["index"].astype(int)) == list(range(8))  # numbering goes on
    assert kept["scene"].value_counts().to_dict() == {"meadow": 4, "canyon": 4}
    assert kept_by_scene(tmp_path / "standin", "720p") == {"meadow": 4, "canyon": 4}


#: the CLI with a stack dump on SIGUSR1, so that a run that does not stop can say where it is
_CLI_WITH_STACKS = ("import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, "
                    "all_threads=True); sys.argv[0] = 'cloud3d'; from cloud3d.cli import main; main()")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_the_game_and_xvfb(xvfb_binary, tmp_path, sig):
    scene = f"m{uuid.uuid4().hex[:10]}"  # a unique scene name, in the game's command line
    err, out = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    with open(err, "w") as fe, open(out, "w") as fo:
        proc = subprocess.Popen([sys.executable, "-c", _CLI_WITH_STACKS, "capture", "game",
                                 "standin", "--out", str(tmp_path), "--count", "500", "--res",
                                 "720p", "--scenes", scene, "--no-progress"],
                                env={**os.environ, **ENV}, stdout=fo, stderr=fe)
    log = tmp_path / "standin" / "frames.csv"
    deadline = time.monotonic() + 300  # a machine at a load of 20 takes minutes to start the game
    kids: set[int] = set()
    try:
        while not (log.exists() and log.read_text().count("\n") >= 3):
            kids |= child_pids(proc.pid)
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
    except BaseException:  # the game and Xvfb must not outlive a failed test either
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            for k in kids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(k, signal.SIGKILL)
        raise
    kids = child_pids(proc.pid)  # Xvfb, the game and the PNG writers
    assert len(kids) >= 2
    proc.send_signal(sig)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(3)
        proc.kill()
        pytest.fail("the capture did not stop; its threads:\n" + err.read_text()[-6000:])
    assert proc.returncode == 130, err.read_text()
    assert "interrupted" in err.read_text()
    assert_gone(kids)
    assert _frames(tmp_path / "standin")["scene"].eq(scene).all()
    assert [v["outcome"] for v in _visits(tmp_path / "standin")] == ["interrupted"]
    assert all(v == [] for v in check_capture(tmp_path / "standin").values())


def test_an_error_mid_run_stops_the_game_and_xvfb(xvfb_binary, tmp_path):
    app_dir = tmp_path / "standin"
    app_dir.mkdir()
    (app_dir / "frames.csv").write_text("some,other,log\n")  # the recorder refuses this folder
    scene = f"e{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(cli_argv("capture", "game", "standin", "--out", tmp_path, "--count",
                                     "5", "--res", "720p", "--scenes", scene, "--no-progress"),
                            env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    kids: set[int] = set()
    while proc.poll() is None:
        kids |= child_pids(proc.pid)
        time.sleep(0.05)
    out, errtext = proc.communicate()
    assert proc.returncode == 1
    lines = [ln for ln in errtext.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "unexpected columns" in lines[0]
    assert kids
    assert_gone(kids)


# -- recipes and the registry ---------------------------------------------------------------------


def test_user_modules_are_listed_and_misspelled_ones_are_errors(run_cli, monkeypatch):
    r = run_cli("capture", "game", "--list", env=ENV)
    assert r.returncode == 0, r.stderr
    for name in ("supertuxkart", "redeclipse", "0ad", "standin"):
        assert f"\n{name}  (" in "\n" + r.stdout
    assert "apt-get install xvfb libgl1-mesa-dri 0ad" in r.stdout
    r = run_cli("capture", "game", "--list", env={**ENV, "CLOUD3D_GAME_MODULES": "plugin_gamez"})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: game module 'plugin_gamez' (from CLOUD3D_GAME_MODULES) cannot be found: check "
        "its spelling and that its folder is on PYTHONPATH"]
    r = run_cli("capture", "game", "nosuchgame", "--out", "x", env=ENV)
    assert r.returncode == 1 and "unknown game 'nosuchgame'; known games: supertuxkart," in r.stderr
    monkeypatch.setenv("CLOUD3D_GAME_MODULES", "helpers")  # importable, but no GAMES
    with pytest.raises(Cloud3dError, match="must define GAMES"):
        all_games()
    monkeypatch.setenv("CLOUD3D_GAME_MODULES", "plugin_games")
    assert get_game("standin") is STANDIN


def test_recipes_build_their_command_lines(tmp_path, monkeypatch):
    stk = get_game("supertuxkart")
    monkeypatch.setattr(type(stk), "find_binary", lambda self: f"/usr/games/{self.binary}")
    cmd = stk.command_for(stk.scene("hacienda"), (1280, 720), tmp_path, seed=5)
    assert cmd[:3] == ["/usr/games/supertuxkart", "--screensize=1280x720", "--windowed"]
    assert "--track=hacienda" in cmd and f"--kart={stk.choose_variants(5)['kart']}" in cmd
    assert stk.choose_variants(5) == stk.choose_variants(5)
    re_ = get_game("redeclipse")
    cmd = re_.command_for(re_.scene("castle"), (1920, 1080), tmp_path, seed=1)
    assert cmd[1:5] == [f"-h{tmp_path}", "-df0", "-dw1920", "-dh1080"]
    assert "deathmatch castle;" in cmd[5]
    zad = get_game("0ad")
    cmd = zad.command_for(zad.scene("magadha_2p"), (1280, 720), tmp_path, seed=2)
    assert "-autostart=skirmishes/magadha_2p" in cmd and "-autostart-player=-1" in cmd
    zad.prepare_home(tmp_path)
    mod = tmp_path / ".local/share/0ad/mods/cloud3d_camera"
    assert json.loads((mod / "mod.json").read_text())["name"] == "cloud3d_camera"
    assert "Engine.CameraFollow" in (mod / "gui/session/zz_cloud3d_camera.js").read_text()
    with pytest.raises(Cloud3dError, match="no scene 'atlantis' is installed"):
        stk.scene("atlantis")
    with pytest.raises(Cloud3dError, match="lists a scene twice"):
        stk.pick_scenes(["hacienda", "hacienda"])


def test_a_missing_game_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("capture.games.recipe.GAME_BIN_DIRS", (str(tmp_path),))
    with pytest.raises(Cloud3dError, match="apt-get install xvfb libgl1-mesa-dri supertuxkart"):
        capture_game(get_game("supertuxkart"), tmp_path, GameOptions(count=1))


def test_legacy_frames_csv_gains_a_scene_column(tmp_path):
    from capture.framelog import LEGACY_COLUMNS, FrameLog

    app = tmp_path / "old"
    app.mkdir()
    row = dict.fromkeys(LEGACY_COLUMNS, "")
    row.update(status="dropped", reason="black", run="20260101T000000Z", grab="0")
    (app / "frames.csv").write_text(",".join(LEGACY_COLUMNS) + "\n" + ",".join(row.values()) + "\n")
    next_index, fixes = FrameLog(app).reconcile()
    assert next_index == 0 and fixes["added_scene_column"] == 1
    df = pd.read_csv(app / "frames.csv", dtype=str)
    assert "scene" in df.columns and df["reason"].tolist() == ["black"]
    assert np.all(df["scene"].isna())

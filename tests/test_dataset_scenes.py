"""``cloud3d split --group scene`` and captures rendered at each resolution on their own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from helpers import CAPTURE_T0, ROOT, CaptureFolder
from plugin_games import STANDIN

from capture.games.runner import GameOptions, capture_game
from capture.synthetic import SyntheticScene
from cloud3d.errors import Cloud3dError
from cloud3d_dataset.blocks import assign_groups
from cloud3d_dataset.manifest import load_manifest
from cloud3d_dataset.split import build_splits
from cloud3d_dataset.verify import verify

ENV = {"CLOUD3D_GAME_MODULES": "plugin_games",
       "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}


def _record(ds: Path, app: str) -> dict:
    return json.loads((ds / ".cloud3d" / f"split-{app}.json").read_text())


#: dataset group -> capture folder of the two streams: grabs of 128x72 written as they are
#: (``native``), and grabs of 1280x720 (``720p``)
STREAMS = {"72p": "native", "720p": "720p"}


def write_game_like_capture(app_dir: Path, scenes: dict[str, int], scene_column: bool = True) -> Path:
    """A capture in ``cloud3d capture game``'s layout: each resolution captured on its own.

    For each folder of :data:`STREAMS` and every scene, ``scenes[scene]`` grabs of capture's
    synthetic scene, 0.5 s apart, each with one file (``file_{res}``) and its scene in
    ``frames.csv`` (left empty with ``scene_column=False``), written by capture's writer.
    """
    t = CAPTURE_T0
    with CaptureFolder(app_dir.parent, app_dir.name) as cap:
        for folder in STREAMS.values():
            for k, (scene, n) in enumerate(scenes.items()):
                view = SyntheticScene(128, 72, seed=k)
                for i in range(n):
                    rgb = view.render(i, fps=0.25)
                    if folder == "720p":  # grabbed at 1280x720 (blown up: no resize to pay for)
                        rgb = rgb.repeat(10, axis=0).repeat(10, axis=1)
                    cap.add(rgb, t, (folder,), scene=scene if scene_column else "")
                    t += 0.5
    return app_dir


def test_whole_scenes_per_split_at_every_resolution(tmp_path):
    scenes = {f"track{k}": 3 for k in range(8)}
    raw = write_game_like_capture(tmp_path / "RAW" / "kart", scenes)
    ds = tmp_path / "DS"
    r = build_splits(raw, ds, train=15, val=3, test=3, group="scene", seed=4, progress=False)
    assert r.counts == {"train": 15, "validation": 3, "test": 3} and r.block == "scene"
    owner = {s: split for split, names in r.scenes.items() for s in names}
    assert len(r.scenes["test"]) == 1 and len(r.scenes["validation"]) == 1
    df = load_manifest(ds)
    cap = pd.read_csv(raw / "frames.csv").set_index("index")
    rec = _record(ds, "kart")
    assert set(rec["n_to_capture"]) == set(STREAMS)  # one stream per resolution
    for res, folder in STREAMS.items():
        rows = rec["n_to_capture"][res]
        assert [n for n, *_ in rows] == list(range(21))
        for _n, split, index, _t in rows:
            assert cap.loc[index, f"file_{folder}"].startswith(folder)
            assert owner[cap.loc[index, "scene"]] == split  # every frame in its scene's split
        sub = df[df["resolution"] == res]
        assert sub.groupby("split").size().to_dict() == {"test": 3, "train": 15, "validation": 3}
    assert rec["scenes"] == r.scenes and verify(ds, progress=False).ok
    # the same seed gives the same split; another seed moves scenes around
    again = build_splits(raw, tmp_path / "DS2", train=15, val=3, test=3, group="scene", seed=4,
                         progress=False)
    assert again.scenes == r.scenes
    assert (tmp_path / "DS" / "manifest.csv").read_bytes() == (tmp_path / "DS2" / "manifest.csv").read_bytes()


def test_scene_groups_need_scenes_and_enough_of_them(tmp_path):
    raw = write_game_like_capture(tmp_path / "RAW" / "kart", {"a": 5, "b": 5}, scene_column=False)
    with pytest.raises(Cloud3dError, match="--group scene needs the scene of every frame"):
        build_splits(raw, tmp_path / "DS", train=6, val=2, test=2, group="scene", progress=False)
    raw = write_game_like_capture(tmp_path / "RAW2" / "kart", {"a": 5, "b": 5, "c": 10})
    args = dict(train=11, val=2, test=2, group="scene", seed=1, progress=False)  # order a, b, c
    with pytest.raises(Cloud3dError, match=r"with whole scenes per split: 15 needed .*frames per "
                                           r"scene: a 5, b 5, c 10; at most 12 fit"):
        build_splits(raw, tmp_path / "DS", **args)
    r = build_splits(raw, tmp_path / "DS", scale_counts=True, **args)
    assert r.counts == {"train": 10, "validation": 1, "test": 1}
    assert r.scenes == {"train": ["c"], "validation": ["b"], "test": ["a"]}
    with pytest.raises(Cloud3dError, match="bad --group"):
        build_splits(raw, tmp_path / "DS3", group="map", progress=False)


def test_assign_groups_keeps_a_scene_in_one_split_across_streams():
    # scene "x" is short at the second resolution: the test split must still own it there
    labels = [["x"] * 4 + ["y"] * 4 + ["z"] * 4, ["x"] * 1 + ["y"] * 4 + ["z"] * 4]
    a = assign_groups(labels, {"train": 4, "validation": 1, "test": 1}, seed=0)
    assert a is not None
    for split in ("train", "validation", "test"):
        owned = set(a.groups(split))
        for lab, arr in zip(labels, a.split_of, strict=True):
            taken = {lab[i] for i in range(len(lab)) if arr[i] == ("train", "validation", "test").index(split)}
            assert taken <= owned
    assert assign_groups(labels, {"train": 9, "validation": 1, "test": 1}, seed=0) is None


def test_time_blocks_on_resolutions_rendered_on_their_own(tmp_path):
    raw = write_game_like_capture(tmp_path / "RAW" / "kart", {"a": 15, "b": 15})
    r = build_splits(raw, tmp_path / "DS", train=20, val=3, test=3, block="2s", progress=False)
    rec = _record(tmp_path / "DS", "kart")
    assert r.counts == {"train": 20, "validation": 3, "test": 3} and rec["streams"]
    cap = pd.read_csv(raw / "frames.csv").set_index("index")
    for res, folder in STREAMS.items():  # each resolution uses only its own frames, numbered 0..25
        rows = rec["n_to_capture"][res]
        assert [n for n, *_ in rows] == list(range(26))
        assert all(cap.loc[i, f"file_{folder}"].startswith(folder) for _n, _s, i, _t in rows)
    assert verify(tmp_path / "DS", progress=False).ok


@pytest.mark.xvfb
def test_a_stand_in_game_capture_splits_by_scene(xvfb_binary, tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("CLOUD3D_GAME_HOME", str(tmp_path / "homes"))
    opts = GameOptions(count=8, resolutions=("720p", "1080p"),
                       scenes=["meadow", "canyon", "harbour", "delta"], progress=False)
    summary = capture_game(STANDIN, tmp_path / "RAW", opts)
    assert summary.complete
    r = run_cli("split", tmp_path / "RAW" / "standin", "--out", tmp_path / "DS", "--train", "4",
                "--val", "2", "--test", "2", "--group", "scene", "--quiet", env=ENV)
    assert r.returncode == 0, r.stderr
    assert "whole scenes per split" in r.stdout and "test scenes:" in r.stdout
    rec = _record(tmp_path / "DS", "standin")
    frames = pd.read_csv(tmp_path / "RAW" / "standin" / "frames.csv", dtype=str)
    scene_of = dict(zip(frames["index"], frames["scene"], strict=True))
    for res in ("720p", "1080p"):
        seen = {split: {scene_of[str(i)] for _n, s, i, _t in rec["n_to_capture"][res] if s == split}
                for split in ("train", "validation", "test")}
        assert not seen["test"] & seen["train"] and not seen["validation"] & seen["train"]
        assert not seen["test"] & seen["validation"]
        assert seen["test"] == set(rec["scenes"]["test"])
    df = load_manifest(tmp_path / "DS")
    assert df.groupby(["resolution", "split"]).size().to_dict() == {
        (res, s): n for res in ("1080p", "720p") for s, n in (("test", 2), ("train", 4),
                                                              ("validation", 2))}
    assert verify(tmp_path / "DS", progress=False).ok

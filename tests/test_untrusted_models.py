"""Untrusted inputs, round 2 (issue 23): model folders and cards, streams, app names.

Every file a command reads from a model folder or is handed as a stream may be a symbolic
link to a device, a named pipe, a deep or huge JSON text, or a card that lies. Real
bundles of a tiny real model, real ``cloud3d`` subprocesses; the ones that used to read
``/dev/zero`` without bound run under an address-space limit, so a regression ends in a
MemoryError traceback (which fails the test) rather than in the machine's memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest
from helpers import cli_argv, make_game_like_frame, tiny_model

from cloud3d.errors import Cloud3dError
from cloud3d.names import check_app_name
from models.bundle import export_bundle, load_bundle, read_card
from models.checkpoint import save_checkpoint
from models.codec import compress_image

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

ARCH = "bmshj2018-hyperprior"
#: address space a subprocess may use: torch reserves about 4 GiB of it at import
AS_LIMIT = 6 << 30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _cli(*args: object, env: dict[str, str] | None = None, timeout: float = 60):
    """``cloud3d ARGS`` with a bounded address space; a hang past ``timeout`` fails the test."""
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})},
                          preexec_fn=_limited)


def _one_clean_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A real float32 bundle ``real`` (card path) of a tiny real model."""
    d = tmp_path_factory.mktemp("bundle")
    ck = save_checkpoint(d / "best.pt", tiny_model(ARCH, seed=5), {"app": "alpha"})
    return export_bundle(ck, "real", d / "models", dtype="float32")


def _card(bundle: Path) -> dict:
    return json.loads(bundle.read_text())


def test_cards_that_are_devices_pipes_or_folders_are_skipped_not_read(bundle, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    for name in ("real.json", "real.npz"):
        (user / name).write_bytes((bundle.parent / name).read_bytes())
    (user / "zero.json").symlink_to("/dev/zero")  # read without bound before the fix
    os.mkfifo(user / "pipe.json")  # hung forever before the fix
    (user / "dir.json").mkdir()
    r = _cli("models", env={"CLOUD3D_MODEL_DIR": str(user)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "real" in r.stdout and "1 in the user folder" in r.stdout
    warnings = r.stderr.strip().splitlines()
    assert len(warnings) == 3 and all(w.startswith("warning: skipped ") for w in warnings)
    assert "character device" in r.stderr and "named pipe" in r.stderr and "folder" in r.stderr
    # as --card-json of an export, too
    _one_clean_line(_cli("models", "export", tmp_path / "none.pt", "--name", "x",
                         "--card-json", user / "pipe.json", "-o", tmp_path / "out"),
                    "pipe.json", "named pipe")


@pytest.mark.parametrize("text, needle", [
    ("[" * 100_000 + "]" * 100_000, "nested 100000 levels"),  # RecursionError before the fix
    ('{"format": "cloud3d-model-card", "x": NaN}', "not valid JSON"),
])
def test_deep_or_non_json_cards_give_one_line(tmp_path, text, needle):
    card = tmp_path / "deep.json"
    card.write_text(text)
    with pytest.raises(Cloud3dError, match=needle) as err:
        read_card(card)
    assert "\n" not in str(err.value) and str(card) in str(err.value)


def test_a_card_with_an_unknown_architecture_is_refused(bundle, tmp_path):
    for name in ("real.json", "real.npz"):
        (tmp_path / name).write_bytes((bundle.parent / name).read_bytes())
    (tmp_path / "real.json").write_text(json.dumps({**_card(bundle), "arch": "nope-arch"}))
    with pytest.raises(Cloud3dError, match="unknown architecture 'nope-arch'"):
        load_bundle(tmp_path / "real.json")  # KeyError before the fix
    r = _cli("models", "show", "real", env={"CLOUD3D_MODEL_DIR": str(tmp_path)})
    _one_clean_line(r, "no model named 'real'")


def test_a_card_with_a_huge_ladder_gives_a_short_line(bundle, tmp_path):
    for name in ("real.json", "real.npz"):
        (tmp_path / name).write_bytes((bundle.parent / name).read_bytes())
    card = _card(bundle)
    for edit in ({"lambdas": list(range(100_000))},
                 {"config": {**card["config"], "lambdas": list(range(1, 100_001))}}):
        (tmp_path / "real.json").write_text(json.dumps({**card, **edit}))
        with pytest.raises(Cloud3dError) as err:
            load_bundle(tmp_path / "real.json")  # a 600 kB message before the fix
        assert len(str(err.value)) < 400 and "lambdas" in str(err.value)
    # whatever a message quotes, the command prints one line of bounded length
    r = _cli("decompress", tmp_path / "real.json", "-o", tmp_path / "x.png", "-m", "real",
             env={"CLOUD3D_MODEL_DIR": str(tmp_path)})
    assert len(_one_clean_line(r)) <= 1000


def test_a_card_claiming_another_models_hash_does_not_block_decoding(bundle, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    for name in ("real.json", "real.npz"):
        (user / f"z{name}").write_bytes((bundle.parent / name).read_bytes())
    card = _card(bundle)
    (user / "zreal.json").write_text(json.dumps({**card, "name": "zreal", "weights_file": "zreal.npz"}))
    # "aaa" sorts first and claims the real model's hash; its weights are another file
    (user / "aaa.json").write_text(json.dumps({**card, "name": "aaa", "weights_file": "aaa.npz"}))
    (user / "aaa.npz").write_bytes(b"PK not the weights")
    rgb = make_game_like_frame(48, 64, 3)
    model, _ = load_bundle(bundle)
    stream = tmp_path / "f.c3d"
    stream.write_bytes(compress_image(model, rgb))
    r = _cli("decompress", stream, "-o", tmp_path / "f.png",
             env={"CLOUD3D_MODEL_DIR": str(user)}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]  # refused before the fix: no fallback
    assert "user model zreal" in r.stdout and (tmp_path / "f.png").is_file()
    (user / "zreal.npz").unlink()  # no card left that loads: one line naming the first
    r = _cli("decompress", stream, "-o", tmp_path / "g.png", env={"CLOUD3D_MODEL_DIR": str(user)})
    _one_clean_line(r, "2 card(s) claim it", "aaa.npz")


@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_decompress_reads_only_a_bounded_regular_file(tmp_path, source):
    if source == "fifo":
        source = tmp_path / "s.c3d"
        os.mkfifo(source)
    r = _cli("decompress", source, "-o", tmp_path / "x.png")  # MemoryError before the fix
    _one_clean_line(r, str(source), "not a regular file")


def test_a_stream_above_the_limit_is_refused_after_reading_the_limit(tmp_path):
    from models.bitstream import MAX_PIXELS

    big = tmp_path / "big.c3d"
    with open(big, "wb") as f:
        f.truncate(3 * MAX_PIXELS + 1)  # sparse: no disk space used
    _one_clean_line(_cli("decompress", big, "-o", tmp_path / "x.png"), "more than")


@pytest.mark.parametrize("app", ["..", ".", ".hidden"])
def test_app_names_that_are_not_plain_folder_names_are_refused(tmp_path, app, run_cli):
    with pytest.raises(ValueError, match="invalid app name"):
        check_app_name(app)
    out = tmp_path / "cap" / "inner"
    r = run_cli("capture", "synthetic", "--out", out, "--app", app, "--count", 2,
                "--size", "64x48", "--no-progress")
    _one_clean_line(r, "invalid app name")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # '..' wrote into cap/ before


@pytest.mark.parametrize("app", ["..", "."])
def test_dot_app_names_are_refused_by_capture_and_split_with_one_reason(tmp_path, app, run_cli):
    """One rule in the core: capture and the dataset stage refuse '.' and '..' the same way,
    saying why (not only which characters are allowed)."""
    from cloud3d.imageio import write_png

    why = "'.' and '..' are not folder names of their own"
    with pytest.raises(ValueError, match=why):
        check_app_name(app)
    r = run_cli("capture", "synthetic", "--out", tmp_path / "cap", "--app", app, "--count", 2,
                "--size", "64x48", "--no-progress")
    _one_clean_line(r, why)
    raw = tmp_path / "pngs"
    raw.mkdir()
    for i in range(2):
        write_png(raw / f"{i}.png", make_game_like_frame(48, 64, seed=i))
    r = run_cli("split", raw, "--out", tmp_path / "ds", "--app", app)
    _one_clean_line(r, why, str(raw))
    assert not (tmp_path / "ds").exists() and not (tmp_path / "cap").exists()


@pytest.mark.parametrize("field, value", [("weights_dtype", {}), ("name", "é" * 5000),
                                          ("format_version", "9" * 5000)])
def test_card_fields_of_any_json_type_give_a_short_line(bundle, tmp_path, field, value):
    # found by the harness's cards family: a TypeError for a dict, a 5 kB line for a name
    card = tmp_path / "real.json"
    card.write_text(json.dumps({**_card(bundle), field: value}))
    with pytest.raises(Cloud3dError) as err:
        read_card(card)
    assert len(str(err.value)) < 400 and "\n" not in str(err.value)

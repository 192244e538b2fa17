"""Quoted values in ``--codec`` specs: a checkpoint path holding ``,`` or ``;`` (issue 24)."""

from __future__ import annotations

import sqlite3

import pytest
from helpers import make_dataset

from baselines.archive.codecs import resolve_codec
from baselines.codecs.registry import parse_codec_spec
from baselines.codecs.spec_text import split_spec
from cloud3d.errors import Cloud3dError


@pytest.fixture()
def odd_checkpoint(tmp_path):
    """A real tiny checkpoint in a folder whose name holds a comma and a semicolon."""
    pytest.importorskip("compressai")
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint

    folder = tmp_path / "runs" / "a,b;c"
    folder.mkdir(parents=True)
    return save_checkpoint(folder / "best.pt", create_model("bmshj2018-hyperprior", N=16, M=24))


def test_bench_takes_a_quoted_checkpoint_path_with_a_comma_and_a_semicolon(odd_checkpoint, tmp_path,
                                                                            run_cli):
    """Regression: the grammar split such a path at the ``,`` and the ``;``, so the codec looked
    for ``runs/a`` and took ``b;c/best.pt`` apart; quoted, it is one checkpoint, benched."""
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=1, h=64, w=64)
    res = tmp_path / "r.sqlite"
    spec = f'learned:checkpoint="{odd_checkpoint}";device=cpu'
    p = run_cli("bench", ds, "--codec", spec, "--results", res, "--workers", "1", "--quiet",
                "--no-estimate", timeout=300)
    assert p.returncode == 0, p.stderr
    con = sqlite3.connect(res)
    got = con.execute("SELECT codec, quality, bytes, status FROM results").fetchall()
    con.close()
    assert [(c, q, s) for c, q, _, s in got] == [("learned", str(odd_checkpoint.resolve()), "ok")]
    assert got[0][2] > 0


def test_an_unterminated_quote_is_one_line_naming_the_spec(tmp_path, run_cli):
    spec = 'learned:checkpoint="runs/a,b/best.pt;device=cpu'
    p = run_cli("bench", tmp_path, "--codec", spec, "--results", tmp_path / "r.sqlite", "--quiet")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1 and "unterminated quote" in p.stderr and "runs/a,b" in p.stderr


def test_quoted_values_keep_separators_and_plain_specs_mean_what_they_did():
    parts = split_spec('learned:checkpoint= "x,1;y" , z.pt ;coder=lzma;bpg_dir="/o;p"', "learned")
    assert parts.values == [("x,1;y", True), ("z.pt", False)]
    assert parts.options == [("coder", "lzma", False), ("bpg_dir", "/o;p", True)]
    plain = split_spec('jpeg:q=20,,40;label=a"b;;subsampling=444', "jpeg")
    assert plain.values == [("20", False), ("40", False)]  # empty values dropped, as before
    assert plain.options == [("label", 'a"b', False), ("subsampling", "444", False)]
    assert parse_codec_spec("jpeg:q=20,40;subsampling=444").qualities == [20, 40]
    for bad, why in (('jpeg:q="20', "unterminated quote"), ('jpeg:q="20"x', "after the quoted value"),
                     ("jpeg:q=20;subsampling", "must look like KEY=VALUE")):
        with pytest.raises(ValueError, match=why):
            parse_codec_spec(bad)
    assert parse_codec_spec("jpeg:q=20;label=1e5").label == "100000.0"  # read as a number
    assert parse_codec_spec('jpeg:q=20;label="1e5"').label == "1e5"  # quoted: kept as written


def test_a_moved_checkpoint_may_land_in_such_a_folder(odd_checkpoint, tmp_path):
    """``unarchive --checkpoint`` swaps the quality on the parsed spec: a new path with a comma
    used to be pasted into the spec text and split there."""
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint

    old = save_checkpoint(tmp_path / "old.pt", create_model("bmshj2018-hyperprior", N=16, M=24))
    ac = resolve_codec(f"learned:checkpoint={old};coder=lzma;device=cpu", str(odd_checkpoint))
    assert ac.quality == str(odd_checkpoint.resolve())
    assert ac.spec == f'learned:checkpoint="{odd_checkpoint}";coder=lzma;device=cpu'
    assert ac.codec.options["coder"] == "lzma"
    with pytest.raises(Cloud3dError, match="unterminated quote"):
        resolve_codec('learned:checkpoint="x.pt;coder=lzma')

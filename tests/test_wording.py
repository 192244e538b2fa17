"""Small wording errors a newcomer met in the documented examples (issue 25)."""

from __future__ import annotations

from helpers import make_game_like_frame

from baselines.bench.estimate import CostEstimate, describe_plan
from capture.recorder import CaptureSummary
from cloud3d.imageio import write_png
from cloud3d_dataset.manifest import index_dataset


def test_bench_on_dask_does_not_suggest_scheduler():
    ests = [CostEstimate("jpeg", 10, 0.5, "stored timings")]
    dask = describe_plan(10, 0, ests, threads=4, where="Dask threads")
    assert "--scheduler" not in dask and "on 4 Dask threads" in dask
    assert "--scheduler" in describe_plan(10, 0, ests, threads=2)


def test_capture_by_duration_reports_the_duration_not_a_frame_count():
    s = CaptureSummary(app="a", app_dir="x", source="synthetic", synthetic=True, resolutions=["720p"],
                       run="r", requested=30, requested_s=1.0, grabbed=31, written=31)
    assert "requested 1 s, grabbed 31" in s.to_text()
    s = CaptureSummary(app="a", app_dir="x", source="synthetic", synthetic=True, resolutions=["720p"],
                       run="r", requested=8, grabbed=8, written=8)
    assert "requested 8, grabbed 8" in s.to_text()


def test_verify_of_one_file_says_file(tmp_path, run_cli):
    write_png(tmp_path / "ds" / "test" / "a-720p" / "1.png", make_game_like_frame(720, 1280, 0))
    index_dataset(tmp_path / "ds", progress=False)
    r = run_cli("verify", tmp_path / "ds", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "ok: 1 file matches the manifest" in r.stdout


def test_archive_and_unarchive_of_one_file_say_file(tmp_path, run_cli):
    write_png(tmp_path / "one" / "a.png", make_game_like_frame(32, 48, 1))
    r = run_cli("archive", tmp_path / "one", "-o", tmp_path / "one.tar", "--codec", "png", "--quiet")
    assert r.returncode == 0 and "archive: 1 file," in r.stdout, r.stdout + r.stderr
    r = run_cli("unarchive", tmp_path / "one.tar", "-o", tmp_path / "back", "--quiet")
    assert r.returncode == 0 and "unarchive: 1 file restored" in r.stdout, r.stdout + r.stderr


def test_capture_help_calls_the_png_writers_what_the_recorder_starts():
    """--writers counts writer processes (the recorder's default pool kind), not threads."""
    import click

    from capture.options import RecordOptions
    from cloud3d.cli import cli

    kind = RecordOptions().writer_kind
    assert kind == "process"
    helps = {name: p.help for name, cmd in cli.commands["capture"].commands.items()
             for p in cmd.params if isinstance(p, click.Option) and p.name == "writers"}
    assert len(helps) >= 5, helps  # every source's command takes --writers
    for name, text in helps.items():
        assert "writer processes" in text and "thread" not in text, (name, text)

"""``cloud3d codecs``, ``cloud3d bench`` and ``cloud3d report``.

Thin layer over :mod:`baselines.bench.runner` and :mod:`baselines.report`; heavy
imports (pandas, matplotlib, dask, torch) happen inside the commands.
"""

from __future__ import annotations

import sys

import click

from cloud3d.errors import Cloud3dError


def codec_rows() -> list[dict[str, str]]:
    """One dict per registered codec: name, availability, quality knob, options, version."""
    from baselines.codecs.registry import all_codecs

    rows = []
    for name, cls in all_codecs().items():
        try:
            codec = cls()
            reason = codec.availability()
        except Exception as exc:  # noqa: BLE001 - one broken codec must not hide the list
            reason = f"availability check failed: {exc}"
        version = ""
        if not reason:
            try:
                version = codec.version()
            except Exception as exc:  # noqa: BLE001
                version = f"(version unknown: {exc})"
        q = cls.quality
        sweep = ",".join(f"{v:g}" for v in q.default_sweep)
        rows.append({
            "name": name,
            "available": "yes" if not reason else "no",
            "why": reason or "",
            "quality": f"{q.name}: {q.meaning} ({q.low:g}..{q.high:g}, "
                       f"{'higher' if q.higher_is_better else 'lower'} is better)",
            "default": sweep,
            "options": ";".join(f"{k}={v}" for k, v in cls.options_defaults.items()),
            "version": version,
            "description": cls.description,
        })
    return rows


@click.group("codecs", invoke_without_command=True)
@click.pass_context
def codecs_cmd(ctx: click.Context) -> None:
    """List every registered codec: availability (and why not), quality range, options, version.

    \b
    Examples:
      cloud3d codecs                                   # the list
      cloud3d codecs build bpg --prefix ~/.local/cloud3d-codecs
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = codec_rows()
    if not rows:
        raise Cloud3dError("no codec modules are installed")
    for r in rows:
        status = "available" if r["available"] == "yes" else f"UNAVAILABLE: {r['why']}"
        click.echo(f"{r['name']}  [{status}]")
        if r["description"]:
            click.echo(f"    {r['description']}")
        click.echo(f"    quality  {r['quality']}")
        click.echo(f"    default  {r['default'] or '(none; give values)'}")
        click.echo(f"    options  {r['options'] or '(none)'}")
        if r["version"]:
            click.echo(f"    version  {r['version']}")
    click.echo("\nspec syntax: --codec NAME[:PARAM=V1,V2,...][;OPTION=VALUE;...]   e.g. --codec 'jpeg:q=20,40,60'\n"
               "a value holding , or ; goes in double quotes: --codec 'learned:checkpoint=\"runs/a,b/best.pt\"'")


@codecs_cmd.command("build")
@click.argument("codec", type=click.Choice(["bpg", "vtm"]))
@click.option("--prefix", required=True, type=click.Path(file_okay=False),
              help="folder that receives the binaries (created if needed)")
@click.option("--source", type=click.Path(dir_okay=False),
              help="local source archive (.tar.gz) instead of downloading the official one")
@click.option("--url", help="download address of the source archive [default: the official one]")
@click.option("--jobs", type=click.IntRange(min=1), help="parallel compile jobs [default: CPU count]")
@click.option("--nice", type=click.IntRange(0, 19), default=10, show_default=True,
              help="niceness of the compiler processes (0 = normal priority)")
@click.option("--keep-build", is_flag=True, help="keep the unpacked source and object files")
def codecs_build_cmd(codec, prefix, source, url, jobs, nice, keep_build) -> None:
    """Build BPG (bpgenc/bpgdec) or VTM (EncoderApp/DecoderApp) from the official sources.

    \b
    Needs: sudo apt-get install build-essential cmake yasm libpng-dev libjpeg-dev
    Sources: libbpg 0.9.8 from bellard.org, VTM 23.13 from the JVET gitlab (downloaded),
    or a local archive with --source. BPG takes ~14 min, VTM ~20 min on 2 cores.
    \b
    Example:
      cloud3d codecs build bpg --prefix ~/.local/cloud3d-codecs --source libbpg-0.9.8.tar.gz
      export CLOUD3D_BPG_DIR=~/.local/cloud3d-codecs
    """
    from baselines.codecs.build import RECIPES, build_codec

    def log(line: str) -> None:
        click.echo(line, err=True)

    try:
        record = build_codec(codec, prefix, source=source, url=url, jobs=jobs, nice=nice,
                             keep_build=keep_build, log=log)
    except KeyboardInterrupt:
        click.echo("interrupted: the build was stopped and its folder removed", err=True)
        sys.exit(130)
    st = record["smoke_test"]
    click.echo(f"built {record['what']} in {record['build_s'] / 60:.1f} min; round trip ok "
               f"({st['bytes']} bytes, {st['psnr']:.2f} dB): {st['version']}")
    click.echo("to use it, run (or add to your shell profile):")
    click.echo(f"  export {RECIPES[codec].env_var}={record['prefix']}")


@click.command("bench")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--split", default="test", show_default=True, help="split to run on ('all' for every split)")
@click.option("--app", "apps", multiple=True, help="only this app (repeatable)")
@click.option("--resolution", "resolutions", multiple=True, help="only this resolution, e.g. 720p (repeatable)")
@click.option("--codec", "codecs", multiple=True, required=True,
              help="codec spec NAME[:PARAM=V1,V2][;OPT=V] (repeatable); see `cloud3d codecs`")
@click.option("--results", required=True, type=click.Path(dir_okay=False), help="SQLite results file")
@click.option("--workers", type=click.IntRange(min=1), help="local worker processes [default: CPU count]")
@click.option("--scheduler", help="Dask scheduler address tcp://HOST:PORT instead of a local pool")
@click.option("--send-images", is_flag=True, help="send image bytes to Dask workers (no shared path needed)")
@click.option("--keep", type=click.Path(file_okay=False), help="save bitstreams and reconstructions here")
@click.option("--limit", type=click.IntRange(min=1), help="only the first N images per app and resolution")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="seconds per task")
@click.option("--no-retry-failed", is_flag=True, help="skip tasks that failed before instead of retrying")
@click.option("--no-estimate", is_flag=True,
              help="start at once: no CPU-time estimate (which may calibrate codecs without stored timings)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def bench_cmd(dataset_dir, split, apps, resolutions, codecs, results, workers, scheduler, send_images, keep,
              limit, timeout, no_retry_failed, no_estimate, quiet) -> None:
    """Run codecs over a dataset split and store per-image results in a SQLite file.

    \b
    Example:
      cloud3d bench data/ --split test --codec jpeg:q=20,40,60,80 \\
          --codec 'hevc-intra:q=30,50;preset=fast' --results results.sqlite --workers 2
    Before it starts it prints the task count (total, already done, to do) and the
    estimated CPU time per curve, from earlier results in the same store or a short
    calibration; re-running the same command resumes: finished tasks are skipped.
    Exit status 1 when any task failed (see `cloud3d report`).
    """
    from baselines.bench.runner import BenchOptions, run_bench

    if workers and scheduler:
        raise Cloud3dError("give either --workers (local pool) or --scheduler (Dask), not both")
    options = BenchOptions(
        split=None if split == "all" else split,
        apps=list(apps) or None, resolutions=list(resolutions) or None,
        workers=workers, scheduler=scheduler, keep=keep, limit=limit, timeout=timeout,
        retry_failed=not no_retry_failed, send_images=send_images, progress=not quiet,
    )
    summary = run_bench(dataset_dir, list(codecs), results, options,
                        announce=None if no_estimate else click.echo)
    click.echo(f"bench: {summary.line()} -> {results}")
    for f in summary.failures[:10]:
        click.echo(f"  failed: {f}", err=True)
    if len(summary.failures) > 10:
        click.echo(f"  ... and {len(summary.failures) - 10} more (see the error column)", err=True)
    if summary.failed:
        sys.exit(1)


@click.command("report")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="report folder")
@click.option("--anchor", help="anchor codec for BD-rate [default: bpg, vtm, hevc-intra or jpeg]")
@click.option("--dataset", type=click.Path(file_okay=False), help="dataset folder for the summary section")
@click.option("--entropy", type=click.Path(file_okay=False), help="output folder of `cloud3d entropy`")
@click.option("--title", help="page title")
@click.option("--bench-folder", "bench_folder", type=click.Path(dir_okay=False),
              help="CSV of `cloud3d bench-folder`: its size-vs-time figure and table")
@click.option("--bench-video", "bench_video", type=click.Path(dir_okay=False),
              help="CSV of `cloud3d bench-video`: its rate-vs-PSNR figure and table")
def report_cmd(results, out, anchor, dataset, entropy, title, bench_folder, bench_video) -> None:
    """Write tables (CSV), RD plots, BD-rate, timing, CompressAI JSON and index.html from RESULTS.

    \b
    Example:
      cloud3d report results.sqlite --out report/ --anchor jpeg --dataset data/
      cloud3d report results.sqlite --out report/ --bench-folder folder.csv --bench-video results/video.csv
    """
    from baselines.report import write_report

    files = write_report(results, out, anchor=anchor, dataset=dataset, entropy=entropy, title=title,
                         bench_folder=bench_folder, bench_video=bench_video)
    click.echo(f"report: {files['index']}")


def register(group: click.Group) -> None:
    """Add the baselines commands to the ``cloud3d`` group."""
    group.add_command(codecs_cmd)
    group.add_command(bench_cmd)
    group.add_command(report_cmd)

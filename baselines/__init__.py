"""baselines stage of cloud3d: codecs over a dataset, results store, reports, folder archives.

Public API (imported lazily, so ``import baselines`` loads neither pandas, torch nor dask)::

    from baselines import BenchOptions, run_bench, write_report
    summary = run_bench("DATASET", ["jpeg:q=30,60", "webp"], "results.sqlite",
                        BenchOptions(split="test"))
    files = write_report("results.sqlite", "report/", anchor="jpeg", dataset="DATASET")

    from baselines import get_codec_class, parse_codec_spec, bd_rate, archive_folder, unarchive

See docs/baselines.md, docs/codecs.md and docs/archive.md.
"""

from __future__ import annotations

from cloud3d.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "run_bench": "baselines.bench.runner",
    "BenchOptions": "baselines.bench.runner",
    "BenchSummary": "baselines.bench.runner",
    "ResultsStore": "baselines.bench.store",
    "write_report": "baselines.report",
    "bd_rate": "baselines.bdrate",
    "bd_quality": "baselines.bdrate",
    "CodecSpec": "baselines.codecs.registry",
    "parse_codec_spec": "baselines.codecs.registry",
    "get_codec_class": "baselines.codecs.registry",
    "all_codecs": "baselines.codecs.registry",
    "Codec": "baselines.codecs.base",
    "archive_folder": "baselines.archive.pack",
    "unarchive": "baselines.archive.unpack",
    "run_folder_bench": "baselines.archive.folder_bench",
})

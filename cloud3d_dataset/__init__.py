"""cloud3d_dataset stage: the on-disk dataset format (layout, manifest, splits, verify, torch Dataset).

Public API (imported lazily, so ``import cloud3d_dataset`` loads neither pandas nor torch;
it mirrors ``cloud3d split/index/verify/stats``)::

    from cloud3d_dataset import build_splits, verify_dataset, dataset_stats, Cloud3dImages
    r = build_splits("RAW", "DATASET", app="kart", train=200, val=25, test=25)
    print(verify_dataset("DATASET").ok, dataset_stats("DATASET"))

``verify_dataset`` and ``dataset_stats`` are :func:`cloud3d_dataset.verify.verify` and
:func:`cloud3d_dataset.stats.stats`: the face names them apart from their modules, since a
package attribute named like a submodule is replaced by that module once it is imported.
See docs/dataset.md.
"""

from __future__ import annotations

from cloud3d.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "build_splits": "cloud3d_dataset.split",
    "SplitOptions": "cloud3d_dataset.split",
    "SplitResult": "cloud3d_dataset.split",
    "index_dataset": "cloud3d_dataset.manifest",
    "load_manifest": "cloud3d_dataset.manifest",
    "select": "cloud3d_dataset.manifest",
    "image_paths": "cloud3d_dataset.manifest",
    "verify_dataset": "cloud3d_dataset.verify:verify",
    "VerifyReport": "cloud3d_dataset.verify",
    "Problem": "cloud3d_dataset.verify",
    "dataset_stats": "cloud3d_dataset.stats:stats",
    "Cloud3dImages": "cloud3d_dataset.torch_dataset",
})

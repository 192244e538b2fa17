"""The dataset stage's Python API in one place (mirrors ``cloud3d split/index/verify/stats``).

``Cloud3dImages`` (the torch Dataset) is deliberately not re-exported here so
that this module does not import torch; get it from
:mod:`cloud3d_dataset.torch_dataset`.
"""

from cloud3d_dataset.manifest import image_paths, index_dataset, load_manifest, select
from cloud3d_dataset.split import SplitResult, build_splits
from cloud3d_dataset.stats import stats
from cloud3d_dataset.verify import Problem, VerifyReport, verify

__all__ = [
    "build_splits",
    "SplitResult",
    "index_dataset",
    "verify",
    "VerifyReport",
    "Problem",
    "stats",
    "load_manifest",
    "select",
    "image_paths",
]

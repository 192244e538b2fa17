"""Splitting one app's raw capture into the dataset layout (``cloud3d split``).

Public entry points: :func:`build_splits`, :class:`SplitOptions`, :class:`SplitResult`.

The steps, one module each:

* :mod:`cloud3d_dataset.split.plan`: which capture folder makes which output resolution,
  which frames are split together (streams), the block spans;
* :mod:`cloud3d_dataset.split.build`: ``build_splits`` itself: assign frames to splits,
  write the files, record how the app was split;
* :mod:`cloud3d_dataset.split.files`: hard links, copies or re-encoded PNGs;
* :mod:`cloud3d_dataset.split.state`: ``DATASET/.cloud3d/``: records, lock, staging, commit.
"""

from cloud3d_dataset.split.build import SplitOptions, SplitResult, build_splits

__all__ = ["SplitOptions", "SplitResult", "build_splits"]

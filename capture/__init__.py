"""capture stage of cloud3d: record frames from 3D applications into PNG files.

Public API (imported lazily so ``cloud3d --help`` stays fast)::

    from capture import record, RecordOptions, SyntheticSource, WindowSource, LaunchSource
    with SyntheticSource(1280, 720, seed=0) as src:
        summary = record(src, "out", "synthetic", RecordOptions(resolutions=("720p",), count=30))

See docs/capture.md.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "record": "capture.recorder",
    "CaptureSummary": "capture.recorder",
    "RecordOptions": "capture.options",
    "FilterConfig": "capture.filters",
    "FrameFilter": "capture.filters",
    "FrameSource": "capture.source",
    "Geometry": "capture.source",
    "SourceExhausted": "capture.source",
    "WindowSource": "capture.window",
    "ScreenSource": "capture.screen",
    "LaunchSource": "capture.launch",
    "VirtualDisplay": "capture.launch",
    "VideoSource": "capture.video",
    "SyntheticSource": "capture.synthetic",
    "SyntheticScene": "capture.synthetic",
    "check_capture": "capture.verify",
    "fit_frame": "capture.resize",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'capture' has no attribute {name!r}")

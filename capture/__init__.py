"""capture stage of cloud3d: record frames from 3D applications into PNG files.

Public API (imported lazily so ``cloud3d --help`` stays fast)::

    from capture import record, RecordOptions, SyntheticSource, WindowSource, LaunchSource
    with SyntheticSource(1280, 720, seed=0) as src:
        summary = record(src, "out", "synthetic", RecordOptions(resolutions=("720p",), count=30))

See docs/capture.md.
"""

from __future__ import annotations

from cloud3d.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
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
})

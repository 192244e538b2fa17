"""analysis stage of cloud3d: per-image entropy/complexity measures vs a natural-photo reference.

Public API (imported lazily so ``cloud3d --help`` stays fast)::

    from analysis import image_measures, measure_folder, compare, plot_density, run_entropy
"""

from __future__ import annotations

from cloud3d.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "MEASURES": "analysis.measures",
    "image_measures": "analysis.measures",
    "measure_folder": "analysis.folder",
    "compare": "analysis.comparison",
    "plot_density": "analysis.plots",
    "plot_density_panels": "analysis.plots",
    "plot_box": "analysis.plots",
    "run_entropy": "analysis.pipeline",
    "EntropyOptions": "analysis.pipeline",
    "STANDIN_NAME": "analysis.reference",
})

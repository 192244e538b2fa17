"""Stand-in natural photos for when no DIV2K (the paper's reference) is at hand.

scikit-image installs a handful of sample images inside its wheel
(``skimage/data/``). Only the real camera photographs among them are used
here; synthetic images (logo, color wheel, phantom, checkerboards, horse
silhouette), scans (page), and scientific imagery (microscopy, retina,
Hubble deep field) are left out. That is 13 photos, 6 in colour and 7 gray,
about 0.1 to 0.5 megapixel each -- far fewer and smaller than DIV2K's 800
2K-resolution training photos, so densities and tests drawn from them are
rough. Every output that uses them says "stand-in".
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cloud3d.atomic import atomic_path
from cloud3d.errors import Cloud3dError

#: Label used for the stand-in reference in CSV group names, legends and run.json.
STANDIN_NAME = "skimage photos (stand-in for DIV2K)"

#: Camera photographs shipped inside scikit-image's wheel, as (file, description).
STANDIN_FILES: tuple[tuple[str, str], ...] = (
    ("astronaut.png", "colour portrait (NASA, public domain)"),
    ("chelsea.png", "colour photo of a cat"),
    ("coffee.png", "colour photo of a coffee cup"),
    ("rocket.jpg", "colour photo of a rocket launch (SpaceX)"),
    ("motorcycle_left.png", "colour photo of a motorcycle (stereo left view)"),
    ("motorcycle_right.png", "colour photo of a motorcycle (stereo right view)"),
    ("camera.png", "gray photo of a photographer"),
    ("clock_motion.png", "gray photo of a wall clock, camera motion blur"),
    ("coins.png", "gray photo of Greek coins"),
    ("moon.png", "gray photo of the moon's surface"),
    ("brick.png", "gray photo of a brick wall (cropped, rectified)"),
    ("grass.png", "gray photo of grass (cropped)"),
    ("gravel.png", "gray photo of gravel (cropped, rescaled)"),
)


def skimage_data_dir() -> Path:
    """Folder holding scikit-image's bundled sample images."""
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - scikit-image is a dependency
        raise Cloud3dError(
            "scikit-image is not installed, so there is no stand-in reference: "
            "pass --reference DIR (e.g. DIV2K_train_HR) or `pip install scikit-image`"
        ) from exc
    return Path(skimage.data.__file__).parent


def prepare_standin(dest: str | Path) -> Path:
    """Copy the stand-in photos (bytes unchanged) into ``dest``; return ``dest``.

    Files already present with the same size are kept, so calling it again is
    cheap. Raises :class:`Cloud3dError` if none of the photos is installed.
    """
    src = skimage_data_dir()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    for name, _desc in STANDIN_FILES:
        s = src / name
        if not s.is_file():
            continue
        d = dest / name
        if not (d.is_file() and d.stat().st_size == s.stat().st_size):
            with atomic_path(d, suffix=s.suffix) as tmp:
                shutil.copyfile(s, tmp)
        copied += 1
    if copied == 0:
        raise Cloud3dError(
            f"none of scikit-image's sample photos was found in {src}: pass --reference DIR instead"
        )
    return dest

"""What float16 storage costs a bundled model: bpp and PSNR of the float32 and float16
exports of one checkpoint, per quality, on real frames (``.c3d`` bytes, decoded pixels).

    python benchmarks/bundle_dtype.py runs/stk/best.pt dataset/test/supertuxkart-720p/175.png ...

Copy a checkpoint that a run is still writing before measuring it (the export refuses a
file that changes while it is read).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from cloud3d.imageio import read_png_rgb
    from models.bundle import export_bundle, load_bundle
    from models.codec import compress_image, decompress_image, prepare

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(__doc__)
        return 2
    checkpoint, frames = args[0], [read_png_rgb(f) for f in args[1:]]
    with tempfile.TemporaryDirectory() as out:
        for dtype in ("float32", "float16"):
            card_path = export_bundle(checkpoint, f"m-{dtype}", out, dtype=dtype)
            model, card = load_bundle(card_path)
            pm = prepare(model, "cpu")
            size = card_path.with_suffix(".npz").stat().st_size
            print(f"{dtype}: {size / 1e6:.1f} MB, weights {card['weights_sha256'][:12]} "
                  f"(checkpoint {card['source']['weights_sha256'][:12]})", flush=True)
            for q in range(card["qualities"]) if card["qualities"] else [None]:
                bpp = psnr = 0.0
                for rgb in frames:
                    data = compress_image(pm, rgb, quality=q)
                    mse = float(np.mean((decompress_image(pm, data).astype(float) - rgb) ** 2))
                    bpp += 8 * len(data) / (rgb.shape[0] * rgb.shape[1]) / len(frames)
                    psnr += 10 * np.log10(255**2 / max(mse, 1e-10)) / len(frames)
                print(f"  {dtype} quality {q}: {bpp:.4f} bpp, {psnr:.3f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

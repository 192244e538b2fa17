"""Make the v1/v2 .c3d fixtures with the code of this commit (compressai's rANS)."""
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, "tests")
import torch
from helpers import loud_latents, make_game_like_frame, tiny_gain_model, tiny_model

from cloud3d.imageio import write_png
from models import bitstream
from models.codec import _latent_shapes, compress_image, prepare
from models.entropy import decode_levels

out = Path(sys.argv[1])
rgb = make_game_like_frame(50, 70, 11, 2)
write_png(str(out / "source.png"), rgb)
cases = {
    "pruned-v1.c3d": ("c2f-xsmall-pruned", None, "whole"),
    "pruned-tiles-v1.c3d": ("c2f-xsmall-pruned", None, 64),
    "msp-v1.c3d": ("c2f-xsmall-pruned-msp", None, "whole"),
    "twolevel-v1.c3d": ("c2f-xsmall", None, "whole"),
    "vr-v2.c3d": ("vr", 1, "whole"),
}
meta = {}
for name, (arch, q, tile) in cases.items():
    m = tiny_gain_model(0) if arch == "vr" else tiny_model(arch, 0, prepare=loud_latents)
    data = compress_image(m, rgb, tile=tile, device="cpu", quality=q)
    (out / name).write_bytes(data)
    pm = prepare(m, "cpu")
    s = bitstream.parse(data)
    h = hashlib.sha256()
    from models.codec import _tiles
    for (*_, ph, pw), strings in zip(_tiles(s.width, s.height, s.tile, pm.stride), s.strings,
                                     strict=True):
        lv = decode_levels(pm.entropy, _latent_shapes(pm, ph, pw), strings, s.coder,
                           {"network": 0.0, "entropy": 0.0}, "x")
        for sym in lv.symbols:
            h.update(sym.to(torch.int32).numpy().astype("<i4").tobytes())
    meta[name] = {"arch": m.arch, "quality": q, "tile": tile, "version": data[4],
                  "bytes": len(data), "symbols_sha256": h.hexdigest()}
    print(name, meta[name])
(out / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")

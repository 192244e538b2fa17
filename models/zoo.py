"""compressai's pretrained reference models as cloud3d checkpoints (where they can be downloaded).

    from models.zoo import zoo_checkpoint
    zoo_checkpoint("mbt2018-mean", quality=3, out="refs/mbt2018-mean-q3.pt")

``zoo_checkpoint`` asks compressai's model zoo for the weights (downloaded over the network
into torch's cache on first use), converts them with :func:`from_compressai` and saves a
regular cloud3d checkpoint usable by ``cloud3d compress -m`` and the ``learned`` codec.
Without network access it raises :class:`Cloud3dError`; train the reference instead
(``cloud3d train --arch mbt2018-mean``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cloud3d.errors import Cloud3dError
from models.architectures import create_model

#: registry name -> compressai zoo function name
ZOO = {"bmshj2018-hyperprior": "bmshj2018_hyperprior", "mbt2018-mean": "mbt2018_mean"}


def from_compressai(net: Any, arch: str) -> Any:
    """A registry model of ``arch`` holding the weights of compressai model ``net``."""
    if arch not in ZOO:
        raise Cloud3dError(f"{arch} has no compressai zoo equivalent; valid: {', '.join(ZOO)}")
    n = net.g_a[0].out_channels
    m = net.g_a[-1].out_channels
    model = create_model(arch, N=n, M=m)
    net.update(force=True)
    model.load_state_dict(net.state_dict(), strict=True)
    return model.eval()


def zoo_checkpoint(arch: str, quality: int, out: str | os.PathLike, metric: str = "mse") -> Path:
    """Download compressai's pretrained ``arch`` at ``quality`` (1..8) and save a checkpoint."""
    import compressai.zoo

    from models.checkpoint import save_checkpoint

    if arch not in ZOO:
        raise Cloud3dError(f"{arch} has no compressai zoo equivalent; valid: {', '.join(ZOO)}")
    if not 1 <= int(quality) <= 8:
        raise Cloud3dError("compressai zoo quality must be 1..8")
    try:
        net = getattr(compressai.zoo, ZOO[arch])(int(quality), metric=metric, pretrained=True,
                                                  progress=False)
    except (OSError, RuntimeError) as exc:
        raise Cloud3dError(
            f"cannot fetch compressai's pretrained {arch} q{quality}: {exc} (no network?); "
            f"train one with `cloud3d train --arch {arch}` instead"
        ) from None
    model = from_compressai(net, arch)
    meta = {"source": f"compressai.zoo.{ZOO[arch]}(quality={quality}, metric={metric!r})",
            "lambda": None, "app": "compressai-zoo", "step": None, "metrics": {}}
    return save_checkpoint(out, model, meta)

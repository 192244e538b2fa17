"""models stage of cloud3d: learned codecs (architectures, bitstreams, training, checkpoints).

Public API (imported lazily, so ``import models`` loads neither torch nor compressai)::

    from models import open_model, compress_image, decompress_image, prepare
    model, _info = open_model("general")     # a bundled or user model, a card or a checkpoint
    pm = prepare(model, device="cpu")
    data = compress_image(pm, rgb)           # rgb: (H, W, 3) uint8 -> .c3d bytes
    rgb2 = decompress_image(pm, data)

    from models import TrainConfig, train_model
    train_model(TrainConfig(dataset="DATASET", out="runs/first", steps=1000))

``train_model`` is :func:`models.train.train`, named apart from its module (a package
attribute named like a submodule is replaced by that module once it is imported).

compressai 1.2.8 calls ``torch.jit.script`` at import time, which recent torch versions flag
with a FutureWarning on every command; that one warning is silenced here. Its package
``__init__`` also imports torch_geometric and torchvision (seconds) for parts no learned codec
here uses: only the coding submodules are loaded (``models/light_compressai.py``).
"""

import warnings

from cloud3d.lazy import lazy_exports
from models.light_compressai import install as _light_compressai

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
_light_compressai()

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "compress_image": "models.codec",
    "decompress_image": "models.codec",
    "compress_image_timed": "models.codec",
    "decompress_image_timed": "models.codec",
    "quantized_reconstruction": "models.codec",
    "CompressResult": "models.codec",
    "DecompressResult": "models.codec",
    "prepare": "models.prepared",
    "PreparedModel": "models.prepared",
    "weights_hash": "models.prepared",
    "create_model": "models.architectures",
    "arch_names": "models.architectures",
    "save_checkpoint": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "open_model": "models.library",
    "scan_models": "models.library",
    "find_model": "models.library",
    "export_bundle": "models.bundle",
    "load_bundle": "models.bundle",
    "TrainConfig": "models.train",
    "train_model": "models.train:train",
    "zoo_checkpoint": "models.zoo",
})

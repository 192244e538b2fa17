"""models stage of cloud3d: learned codecs (architectures, bitstreams, training, checkpoints).

compressai 1.2.8 calls ``torch.jit.script`` at import time, which recent torch versions flag
with a FutureWarning on every command; that one warning is silenced here. Its package
``__init__`` also imports torch_geometric and torchvision (seconds) for parts no learned codec
here uses: only the coding submodules are loaded (``models/light_compressai.py``).
"""

import warnings

from models.light_compressai import install as _light_compressai

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
_light_compressai()

"""models stage of cloud3d: learned codecs (architectures, bitstreams, training, checkpoints).

compressai 1.2.8 calls ``torch.jit.script`` at import time, which recent torch versions flag
with a FutureWarning on every command; that one warning is silenced here.
"""

import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

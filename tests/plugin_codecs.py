"""Small real codecs for tests, pluggable into the registry like a user's own codec module.

A subprocess adds them with ``CLOUD3D_CODEC_MODULES=plugin_codecs`` (``tests/`` on
``PYTHONPATH``), so the CLI's resume, timeout and Ctrl-C behaviour is exercised with tasks
slow enough to be interrupted mid-run.
"""

from __future__ import annotations

import signal
import time
import zlib

import numpy as np

from baselines.codecs.base import Codec, CodecError, DecodeResult, EncodeResult, QualityParam


class QuantZlibCodec(Codec):
    """Lossy: drop the ``bits`` low bits of every sample, then zlib the raw array."""

    name = "test-quant"
    description = "quantise + zlib (test codec)"
    quality = QualityParam("bits", "low bits dropped per sample", 0, 7, default_sweep=(1, 3))
    options_defaults = {"sleep": 0.0, "fail_marker": -1, "hang": 0.0}

    def version(self) -> str:
        return f"zlib {zlib.ZLIB_VERSION}"

    def encode_timed(self, rgb: np.ndarray, quality: float) -> EncodeResult:
        t0 = time.perf_counter()
        if self.options["fail_marker"] >= 0 and int(rgb[0, 0, 0]) == self.options["fail_marker"]:
            raise CodecError(f"refusing image whose first red sample is {self.options['fail_marker']}")
        if self.options["sleep"]:
            time.sleep(self.options["sleep"])
        if self.options["hang"]:  # like C code that never returns to Python: SIGALRM stays pending
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            try:
                time.sleep(self.options["hang"])
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        b = int(quality)
        q = (rgb >> b) << b
        if b:
            q = q + (1 << (b - 1))
        head = np.array([rgb.shape[0], rgb.shape[1]], dtype=">u4").tobytes()
        data = head + zlib.compress(q.astype(np.uint8).tobytes(), 6)
        return EncodeResult(data=data, encode_s=time.perf_counter() - t0)

    def decode_timed(self, data: bytes) -> DecodeResult:
        t0 = time.perf_counter()
        h, w = np.frombuffer(data[:8], dtype=">u4")
        rgb = np.frombuffer(zlib.decompress(data[8:]), dtype=np.uint8).reshape(int(h), int(w), 3).copy()
        return DecodeResult(rgb=rgb, decode_s=time.perf_counter() - t0)


CODECS = [QuantZlibCodec]



"""Real round trips through the pip-installable codecs (Pillow formats, JPEG XL, HEVC intra via libheif)."""

from __future__ import annotations

import io
import pickle

import numpy as np
import PIL
import pytest
from helpers import make_game_like_frame
from PIL import Image, JpegImagePlugin
from skimage.metrics import peak_signal_noise_ratio

from baselines.codecs.base import CodecError
from baselines.codecs.registry import all_codecs, get_codec_class, parse_codec_spec
from baselines.metrics import bpp

#: three quality values per codec, from worst to best picture quality
SWEEPS = {
    "jpeg": (10, 50, 95),
    "webp": (5, 50, 95),
    "jpeg2000": (30, 12, 3),  # compression ratio: lower is better
    "avif": (10, 50, 90),
    "jpegxl": (10, 50, 95),
    "hevc-intra": (10, 50, 90),
}
LOSSY = tuple(SWEEPS)
SIZES = [(48, 64), (45, 67)]


@pytest.fixture(scope="module")
def frames():
    return {s: make_game_like_frame(*s, seed=7, t=0.3) for s in SIZES}


def test_registry_lists_every_codec_family():
    names = list(all_codecs())
    for n in ("png", "jpeg", "webp", "jpeg2000", "avif", "jpegxl", "hevc-intra", "bpg", "vtm"):
        assert n in names
    for n in ("png", *LOSSY):
        assert get_codec_class(n)().availability() is None, n


@pytest.mark.parametrize("name", LOSSY)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
def test_lossy_round_trip_bpp_and_psnr_order(name, size, frames, tmp_path):
    rgb = frames[size]
    h, w = size
    codec = pickle.loads(pickle.dumps(get_codec_class(name)()))  # instances travel to workers
    psnrs = []
    for q in SWEEPS[name]:
        enc = codec.encode_timed(rgb, q)
        assert isinstance(enc.data, bytes) and enc.encode_s >= 0
        dec = codec.decode_timed(enc.data)
        assert dec.rgb.shape == (h, w, 3) and dec.rgb.dtype == np.uint8
        # bpp from the file on disk, computed independently of baselines.metrics
        f = tmp_path / f"{name}-{q}{codec.extension}"
        f.write_bytes(enc.data)
        assert bpp(len(enc.data), w, h) == pytest.approx(f.stat().st_size * 8 / (w * h))
        psnrs.append(peak_signal_noise_ratio(rgb, dec.rgb, data_range=255))
    assert psnrs[0] < psnrs[1] < psnrs[2], f"{name}: PSNR not increasing with quality: {psnrs}"
    assert psnrs[2] > 28


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
def test_png_is_lossless(size, frames):
    rng = np.random.default_rng(0)
    codec = get_codec_class("png")()
    assert codec.lossless
    for rgb in (frames[size], rng.integers(0, 256, size + (3,), dtype=np.uint8)):
        data = codec.encode(rgb, 6)
        assert Image.open(io.BytesIO(data)).format == "PNG"
        np.testing.assert_array_equal(codec.decode(data), rgb)


@pytest.mark.parametrize("name", ("png", *LOSSY))
def test_corrupt_and_truncated_streams_raise_codec_error(name, frames):
    codec = get_codec_class(name)()
    q = SWEEPS.get(name, (6, 6, 6))[1]
    data = codec.encode(frames[SIZES[0]], q)
    for bad in (data[: len(data) // 2], b"not an image at all" * 4, b""):
        with pytest.raises(CodecError, match=rf"^{name}: .*(corrupt or truncated|empty bitstream)"):
            codec.decode(bad)


def test_jpeg_subsampling_option_is_applied(frames):
    rgb = frames[SIZES[0]]
    for opt, pil_code in (("444", 0), ("420", 2)):
        data = get_codec_class("jpeg")(subsampling=opt).encode(rgb, 80)
        assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(data))) == pil_code


def test_hevc_intra_defaults_to_444_and_honours_options(frames):
    import pillow_heif

    rgb = frames[SIZES[0]]
    codec = get_codec_class("hevc-intra")()
    assert codec.options["subsampling"] == "444"
    assert pillow_heif.open_heif(io.BytesIO(codec.encode(rgb, 50))).info["chroma"] == 444
    fast = get_codec_class("hevc-intra")(subsampling="420", preset="ultrafast")
    assert pillow_heif.open_heif(io.BytesIO(fast.encode(rgb, 50))).info["chroma"] == 420
    assert "x265" in codec.version() and "preset=medium" in codec.version()
    pooled = get_codec_class("hevc-intra")(threads=0)  # x265's own threading: same coding tools, valid stream
    assert pooled.decode(pooled.encode(rgb, 50)).shape == rgb.shape


def test_version_and_provenance_name_the_library():
    for name in ("png", *LOSSY):
        c = get_codec_class(name)()
        v = c.version()
        assert v and v != "unknown"
        if name != "hevc-intra":
            assert PIL.__version__ in v
        assert c.provenance()


def test_option_and_quality_validation_messages():
    with pytest.raises(ValueError, match="subsampling='411' invalid; valid: 444, 422, 420"):
        get_codec_class("jpeg")(subsampling="411")
    with pytest.raises(ValueError, match="unknown option"):
        get_codec_class("webp")(colour="x")
    with pytest.raises(ValueError, match="preset"):
        get_codec_class("hevc-intra")(preset="fastest")
    with pytest.raises(ValueError, match=r"q=101 out of range 1\.\.100"):
        parse_codec_spec("jpeg:q=20,101")
    spec = parse_codec_spec("avif:q=30,60;subsampling=444;speed=8")
    assert spec.qualities == [30, 60] and spec.make().options["subsampling"] == "444"
    assert parse_codec_spec("jpeg2000").qualities == [10, 20, 40, 80, 160]
    with pytest.raises(CodecError, match=r"\(H, W, 3\) uint8"):
        get_codec_class("jpeg")().encode(np.zeros((8, 8), np.uint8), 50)

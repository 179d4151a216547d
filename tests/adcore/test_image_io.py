"""Tests for adcore.image_io: every supported format/mode loads, every bad file is refused."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from adcore import image_io
from adcore.errors import (
    AspectRatioError,
    CorruptImageError,
    EmptyFileError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    UnreadablePathError,
)
from adcore.image_io import ImageLimits, is_image_path, load_image

W, H = 16, 12  # every "good" image is 16 wide x 12 high -> array shape (12, 16, 3)


# --------------------------------------------------------------------------------------------
# Helpers that write tiny synthetic images.


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _raw_png(width: int, height: int, bit_depth: int, color_type: int, rows) -> bytes:
    """Hand-build a PNG (Pillow cannot write 16-bit RGB or stream a huge 1-bit image).

    ``rows`` yields each scanline's bytes, without the filter byte.
    """

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    comp = zlib.compressobj(1)
    idat = b"".join(comp.compress(b"\x00" + row) for row in rows) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _noise_rgb(width: int = 64, height: int = 64) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _palette(transparent: bool) -> bytes:
    img = Image.new("P", (W, H), 1)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    return _encode(img, "PNG", transparency=1) if transparent else _encode(img, "PNG")


def _rgb16_png() -> bytes:
    px = np.zeros((H, W, 3), ">u2")
    px[...] = (0x80FF, 0xFFFF, 0x0000)
    return _raw_png(W, H, 16, 2, (px[y].tobytes() for y in range(H)))


# id -> (bytes factory, expected RGB of pixel (0, 0), tolerance)
GOOD: dict[str, tuple[Callable[[], bytes], tuple[int, int, int], int]] = {
    "png_L": (lambda: _encode(Image.new("L", (W, H), 100), "PNG"), (100, 100, 100), 0),
    "png_1": (lambda: _encode(Image.new("1", (W, H), 1), "PNG"), (255, 255, 255), 0),
    "png_LA": (lambda: _encode(Image.new("LA", (W, H), (200, 255)), "PNG"), (200, 200, 200), 0),
    "png_RGBA": (
        lambda: _encode(Image.new("RGBA", (W, H), (10, 20, 30, 255)), "PNG"),
        (10, 20, 30),
        0,
    ),
    "png_P": (lambda: _palette(transparent=False), (0, 0, 255), 0),
    "png_P_transparent": (lambda: _palette(transparent=True), (0, 0, 0), 0),
    "png_I16": (
        lambda: _encode(Image.fromarray(np.full((H, W), 65535, np.uint16)), "PNG"),
        (255, 255, 255),
        0,
    ),
    "png_RGB16": (_rgb16_png, (128, 255, 0), 0),
    "jpeg_RGB": (
        lambda: _encode(Image.new("RGB", (W, H), (200, 100, 50)), "JPEG"),
        (200, 100, 50),
        4,
    ),
    "jpeg_CMYK": (
        lambda: _encode(Image.new("CMYK", (W, H), (0, 255, 255, 0)), "JPEG"),
        (255, 0, 0),
        4,
    ),
    "bmp_RGB": (lambda: _encode(Image.new("RGB", (W, H), (1, 2, 3)), "BMP"), (1, 2, 3), 0),
    "tiff_RGB": (lambda: _encode(Image.new("RGB", (W, H), (7, 8, 9)), "TIFF"), (7, 8, 9), 0),
    "tiff_I16": (
        lambda: _encode(Image.fromarray(np.full((H, W), 32896, np.uint16)), "TIFF"),
        (128, 128, 128),
        0,
    ),
    "tiff_I16B": (
        lambda: _encode(Image.new("I;16B", (W, H), 65535), "TIFF"),
        (255, 255, 255),
        0,
    ),
    "tiff_F": (
        lambda: _encode(
            Image.fromarray(np.linspace(-1.0, 3.0, W * H, dtype=np.float32).reshape(H, W)), "TIFF"
        ),
        (0, 0, 0),
        0,
    ),
    "tiff_I32": (
        lambda: _encode(Image.fromarray(np.full((H, W), 100_000, np.int32)), "TIFF"),
        (0, 0, 0),
        0,
    ),
    "gif_P": (lambda: _encode(Image.new("RGB", (W, H), (255, 0, 0)), "GIF"), (255, 0, 0), 0),
}


def _assert_rgb_array(arr: np.ndarray, height: int = H, width: int = W) -> None:
    assert arr.shape == (height, width, 3)
    assert arr.dtype == np.uint8
    assert arr.flags["C_CONTIGUOUS"]


# --------------------------------------------------------------------------------------------
# Good images.


@pytest.mark.parametrize("case", list(GOOD), ids=list(GOOD))
def test_good_formats_and_modes_load_as_rgb_uint8(tmp_path: Path, case: str) -> None:
    make, expected, tol = GOOD[case]
    path = tmp_path / f"{case}.img"
    path.write_bytes(make())
    arr = load_image(path)
    _assert_rgb_array(arr)
    assert np.abs(arr[0, 0].astype(int) - expected).max() <= tol, arr[0, 0]


@pytest.mark.parametrize("case", ["png_L", "png_RGBA", "jpeg_CMYK", "tiff_I16"])
def test_bytes_input_matches_path_input(tmp_path: Path, case: str) -> None:
    data = GOOD[case][0]()
    path = tmp_path / f"{case}.img"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_image(data), load_image(path))
    np.testing.assert_array_equal(load_image(bytearray(data), name="x.png"), load_image(str(path)))


@pytest.mark.parametrize(
    ("mode", "fmt"), [("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF")], ids=str
)
def test_16bit_gray_uses_full_range_mapping(mode: str, fmt: str) -> None:
    values = [0, 65535, 32896, 257, 128, 129, 65534, 1000] * 2
    img = Image.new(mode, (16, 8))
    img.putdata(values * 8)
    arr = load_image(_encode(img, fmt))
    _assert_rgb_array(arr, 8, 16)
    np.testing.assert_array_equal(arr[0, :8, 0], [0, 255, 128, 1, 0, 1, 255, 4])
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_float_image_is_min_max_scaled() -> None:
    ramp = np.linspace(-5.0, 5.0, 16 * 8, dtype=np.float32).reshape(8, 16)
    arr = load_image(_encode(Image.fromarray(ramp), "TIFF"))
    assert arr.min() == 0 and arr.max() == 255
    assert (np.diff(arr[..., 0].ravel().astype(int)) >= 0).all()  # monotone ramp kept


def test_alpha_is_composited_onto_black() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[...] = (200, 100, 50, 255)
    rgba[0, 0, 3] = 0
    rgba[0, 1, 3] = 128
    arr = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(arr[0, 0]) == (0, 0, 0)
    assert tuple(arr[0, 1]) == (100, 50, 25)
    assert tuple(arr[1, 1]) == (200, 100, 50)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, "JPEG", exif=exif, quality=95)
    arr = load_image(path)
    assert arr.shape == (40, 20, 3)  # 20 wide x 40 high once upright
    assert arr[5, 10, 0] > 200 and arr[5, 10, 2] < 50  # stored left (red) is now on top
    assert arr[35, 10, 2] > 200 and arr[35, 10, 0] < 50


# --------------------------------------------------------------------------------------------
# The bad-file corpus.


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Write one file (or directory) per kind of bad input; return id -> path."""
    root = tmp_path_factory.mktemp("bad")
    png = _encode(_noise_rgb(), "PNG")
    jpeg = _encode(_noise_rgb(), "JPEG")
    idat = png.index(b"IDAT") + 4
    flipped = bytearray(png)
    for i in range(idat + 100, idat + 132):
        flipped[i] ^= 0xFF
    rng = np.random.default_rng(1)
    files = {
        "zero_byte": ("zero.png", b""),
        "text_as_jpeg": ("notes.jpg", b"this is a text file, not a picture\n" * 20),
        "random_bytes": ("random.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        "truncated_png": ("half.png", png[: len(png) // 2]),
        "png_cut_in_header": ("stub.png", png[:20]),
        "corrupt_png_idat": ("flipped.png", bytes(flipped)),
        "truncated_jpeg": ("half.jpg", jpeg[: len(jpeg) // 2]),
        "jpeg_garbage_after_header": ("garbage.jpg", jpeg[:100] + b"\x00" * 4000),
        "over_max_pixels": ("big.png", _encode(Image.new("L", (200, 200)), "PNG")),
        "bomb_over_limit": ("bomb81.png", _raw_png(9000, 9000, 1, 0, [b"\x00" * 1125] * 9000)),
        "bomb_over_pillow_guard": (
            "bomb900.png",
            _raw_png(30000, 30000, 1, 0, [b"\x00" * 3750] * 30000),
        ),
        "absurd_aspect": ("strip.png", _encode(Image.new("L", (2000, 10)), "PNG")),
        "too_small": ("tiny.png", _encode(Image.new("L", (4, 4)), "PNG")),
    }
    corpus = {}
    for case, (fname, data) in files.items():
        corpus[case] = root / fname
        corpus[case].write_bytes(data)
    corpus["directory"] = root / "folder.png"
    corpus["directory"].mkdir()
    corpus["missing"] = root / "missing.png"
    return corpus


SMALL = ImageLimits(max_pixels=10_000)
BAD = [
    ("zero_byte", EmptyFileError, None),
    ("text_as_jpeg", NotAnImageError, None),
    ("random_bytes", NotAnImageError, None),
    ("truncated_png", CorruptImageError, None),
    ("png_cut_in_header", CorruptImageError, None),
    ("corrupt_png_idat", CorruptImageError, None),
    ("truncated_jpeg", CorruptImageError, None),
    ("jpeg_garbage_after_header", CorruptImageError, None),
    ("over_max_pixels", ImageTooLargeError, SMALL),
    ("bomb_over_limit", ImageTooLargeError, None),
    ("bomb_over_pillow_guard", ImageTooLargeError, None),
    ("absurd_aspect", AspectRatioError, None),
    ("too_small", AspectRatioError, None),
    ("directory", UnreadablePathError, None),
    ("missing", UnreadablePathError, None),
]
BAD_IDS = [case for case, _, _ in BAD]
FILE_CASES = [row for row in BAD if row[0] not in ("directory", "missing")]


@pytest.mark.parametrize(("case", "error", "limits"), BAD, ids=BAD_IDS)
def test_bad_path_is_refused_with_typed_error(
    bad_corpus: dict[str, Path], case: str, error: type[ImageLoadError], limits
) -> None:
    path = bad_corpus[case]
    with pytest.raises(error) as info:
        load_image(path, limits=limits)
    assert type(info.value) is error
    assert path.name in str(info.value)


@pytest.mark.parametrize(("case", "error", "limits"), FILE_CASES, ids=[r[0] for r in FILE_CASES])
def test_bad_bytes_are_refused_with_typed_error(
    bad_corpus: dict[str, Path], case: str, error: type[ImageLoadError], limits
) -> None:
    with pytest.raises(error) as info:
        load_image(bad_corpus[case].read_bytes(), limits=limits, name="upload-42.png")
    assert type(info.value) is error
    assert "upload-42.png" in str(info.value)


@pytest.mark.parametrize(
    ("case", "limits"),
    [
        ("over_max_pixels", SMALL),
        ("bomb_over_limit", None),
        ("bomb_over_pillow_guard", None),
        ("absurd_aspect", None),
        ("too_small", None),
    ],
)
def test_size_checks_happen_before_decoding(
    bad_corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, case: str, limits
) -> None:
    decoded: list[object] = []
    original = ImageFile.ImageFile.load

    def spy(self):
        decoded.append(self)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    with pytest.raises((ImageTooLargeError, AspectRatioError)):
        load_image(bad_corpus[case], limits=limits)
    assert decoded == []


def test_unexpected_decoder_failure_becomes_corrupt_with_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fine.png"
    path.write_bytes(GOOD["png_L"][0]())

    def boom(self):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)
    with pytest.raises(CorruptImageError, match="fine.png") as info:
        load_image(path)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_loading_truncated_images_is_not_enabled() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_empty_bytes_without_name() -> None:
    with pytest.raises(EmptyFileError, match="uploaded image"):
        load_image(b"")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(UnreadablePathError, match="pipe.png"):
        load_image(fifo)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file"
)
def test_permission_denied_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(GOOD["png_L"][0]())
    path.chmod(0)
    try:
        with pytest.raises(UnreadablePathError, match="secret.png"):
            load_image(path)
    finally:
        path.chmod(0o600)


def test_permission_error_on_open_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same as above but simulated, so it also runs as root (CI containers)."""
    path = tmp_path / "locked.png"
    path.write_bytes(GOOD["png_L"][0]())

    def deny(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(UnreadablePathError, match="locked.png.*permission denied") as info:
        load_image(path)
    assert isinstance(info.value.__cause__, PermissionError)


# --------------------------------------------------------------------------------------------
# The contract for callers: a batch keeps going after a bad file.


def _load_all(paths: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, ImageLoadError]]:
    loaded: dict[str, np.ndarray] = {}
    failed: dict[str, ImageLoadError] = {}
    for path in paths:
        try:
            loaded[path.name] = load_image(path)
        except ImageLoadError as exc:
            failed[path.name] = exc
    return loaded, failed


def test_batch_continues_after_bad_files(bad_corpus: dict[str, Path], tmp_path: Path) -> None:
    good = []
    for case in ("png_L", "jpeg_RGB", "tiff_I16"):
        good.append(tmp_path / f"{case}.img")
        good[-1].write_bytes(GOOD[case][0]())
    bad = [bad_corpus[c] for c in ("zero_byte", "truncated_png", "missing", "text_as_jpeg")]
    loaded, failed = _load_all([good[0], bad[0], bad[1], good[1], bad[2], bad[3], good[2]])
    assert sorted(loaded) == sorted(p.name for p in good)
    assert {name: type(exc) for name, exc in failed.items()} == {
        "zero.png": EmptyFileError,
        "half.png": CorruptImageError,
        "missing.png": UnreadablePathError,
        "notes.jpg": NotAnImageError,
    }


# --------------------------------------------------------------------------------------------
# Small helpers.


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.png", True),
        ("A.JPG", True),
        ("b.JpEg", True),
        ("c.bmp", True),
        ("d.TIF", True),
        ("e.tiff", True),
        ("f.gif", False),
        ("png", False),
        ("g.png.txt", False),
    ],
)
def test_is_image_path(name: str, expected: bool) -> None:
    assert is_image_path(name) is expected
    assert is_image_path(Path("dir") / name) is expected


@pytest.mark.parametrize(
    "kwargs",
    [{"max_pixels": 0}, {"min_side": 0}, {"max_aspect": 0.5}, {"max_aspect": float("nan")}],
)
def test_invalid_limits_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ImageLimits(**kwargs)


def test_defaults() -> None:
    assert ImageLimits() == ImageLimits(64_000_000, 20.0, 8)
    assert image_io.SUPPORTED_EXTENSIONS == (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# --------------------------------------------------------------------------------------------
# Formats stored under a type the browser shows, and the per-file size cap.


def test_a_ppm_file_is_not_an_image_loupe_reads(tmp_path: Path) -> None:
    data = _encode(Image.new("RGB", (W, H), (1, 2, 3)), "PPM")
    (tmp_path / "part.png").write_bytes(data)  # whatever its extension says
    with pytest.raises(NotAnImageError, match="not an image Loupe can read"):
        load_image(data, name="part.ppm")
    with pytest.raises(NotAnImageError, match="part.png"):
        load_image(tmp_path / "part.png")


class _CountingReads(io.BytesIO):
    """In-memory bytes whose ``fileno`` is a real file's (for ``fstat``); reads are recorded."""

    def __init__(self, data: bytes, real: io.BufferedReader) -> None:
        super().__init__(data)
        self.real, self.sizes = real, []

    def fileno(self) -> int:
        return self.real.fileno()

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(size)
        return super().read(size)


def test_read_capped_refuses_an_oversize_file_without_reading_it_whole(tmp_path: Path) -> None:
    assert image_io.MAX_FILE_BYTES == 50 * 1024 * 1024
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * 100)
    with big.open("rb") as real:
        fp = _CountingReads(b"x" * 100, real)
        with pytest.raises(ImageTooLargeError, match=r"'big.png' is larger than the 10 bytes"):
            image_io.read_capped(fp, "big.png", max_bytes=10)
        assert fp.sizes == []  # refused from its size alone
    small = tmp_path / "small.png"
    small.write_bytes(b"x" * 5)
    with small.open("rb") as real:  # it says 5 bytes, then grows while read
        fp = _CountingReads(b"x" * 100, real)
        with pytest.raises(ImageTooLargeError, match="over 10 bytes"):
            image_io.read_capped(fp, "small.png", max_bytes=10)
        assert fp.sizes == [11]
    with small.open("rb") as real:
        assert image_io.read_capped(real, "small.png", max_bytes=5) == b"x" * 5

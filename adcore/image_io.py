"""Load any user-supplied image into an RGB ``uint8`` array, or refuse it with a typed error.

Every image that enters Loupe (training folders, uploads, batch runs) goes through
:func:`load_image`. Bad input never escapes as a raw traceback: it becomes an
:class:`~adcore.errors.ImageLoadError` subclass whose message names the file and says what to do.
:func:`read_capped` refuses a file over :data:`MAX_FILE_BYTES` without reading it whole (the
API, the server folders and the hot folders use that one limit).

Pixel-mode policy (output is always ``(H, W, 3)`` ``uint8``, C-contiguous):

* ``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``...: Pillow's own conversion to RGB.
* Modes with alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency): composited onto a
  **black** background, i.e. colour is multiplied by ``alpha / 255``.
* Integer grayscale (``I;16``, ``I;16B``, ``I``): full-range 16-bit mapping ``round(v / 257)``
  (65535 -> 255, never clipped) when all values fit in 0..65535, else min-max to 0..255.
* Float grayscale (``F``): min-max of the finite values to 0..255 (constant image -> 0).
* 16-bit RGB PNGs are already reduced to 8 bits by Pillow (it keeps the high byte).

The EXIF orientation tag is applied, so the array is upright as a viewer would show it.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from adcore.errors import (
    AspectRatioError,
    CorruptImageError,
    EmptyFileError,
    ImageTooLargeError,
    NotAnImageError,
    UnreadablePathError,
)

MAX_FILE_BYTES = 50 * 1024 * 1024
"""Largest image file Loupe reads or accepts, in bytes (the API, server and hot folders)."""
DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_ASPECT = 20.0
MIN_SIDE = 8
SUPPORTED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Pillow plugins we let parse untrusted bytes. EPS (runs Ghostscript), PDF, PSD and the other
# exotic readers are left out on purpose. (Multi-picture camera JPEGs come back as MPO images
# through the JPEG opener; "MPO" itself is not a registered opener and would raise KeyError.)
# Only formats stored under an extension a browser is served with a type for: PPM, stored as
# ".bin" and served as application/octet-stream, is refused.
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP")
# Signatures of formats whose header Pillow could not parse: "damaged", not "not an image".
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF8")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_FORMATS_HINT = "PNG, JPEG, BMP or TIFF"


@dataclass(frozen=True)
class ImageLimits:
    """Sanity limits checked from the image header, before any pixel is decoded.

    Attributes:
        max_pixels: Largest accepted ``width * height`` (decompression-bomb guard). Pillow's own
            guard still refuses anything above ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (~179 M).
        max_aspect: Largest accepted ``long side / short side``.
        min_side: Smallest accepted width or height, in pixels.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect: float = DEFAULT_MAX_ASPECT
    min_side: int = MIN_SIDE

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.min_side < 1 or not self.max_aspect >= 1.0:
            raise ValueError(f"invalid image limits: {self}")


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Return whether ``path`` has a supported image extension (case-insensitive).

    Only the name is looked at; the file is not opened and need not exist.
    """
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def read_capped(fp: BinaryIO, label: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read an open regular file whole, refusing one over ``max_bytes`` without reading it whole.

    The size is checked from ``fstat`` before any byte is read; then at most ``max_bytes + 1``
    bytes are read, so a file that grew meanwhile is refused too.

    Args:
        fp: A file opened for binary reading (its position at the start).
        label: The file's name in error messages.
        max_bytes: Largest accepted size, default :data:`MAX_FILE_BYTES`.

    Returns:
        The file's bytes.

    Raises:
        UnreadablePathError: The file is not a regular file (a FIFO, a device, a folder).
        ImageTooLargeError: The file is larger than ``max_bytes``.
        OSError: The file cannot be read.
    """
    info = os.fstat(fp.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise UnreadablePathError(f"'{label}' is not a regular file: it was not read.")
    if info.st_size > max_bytes:
        raise file_too_large(label, f"{info.st_size:,} bytes", max_bytes)
    data = fp.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the check
        raise file_too_large(label, f"over {max_bytes:,} bytes", max_bytes)
    return data


def file_too_large(label: str, size: str, max_bytes: int = MAX_FILE_BYTES) -> ImageTooLargeError:
    """The error for a file of ``size`` (text) over ``max_bytes``: it is refused unread."""
    mb = 1024 * 1024
    limit = f"{max_bytes / mb:g} MB" if max_bytes >= mb else f"{max_bytes:,} bytes"
    return ImageTooLargeError(
        f"'{label}' is larger than the {limit} limit for one image file ({size}): it was not "
        "read. Send a smaller file."
    )


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    limits: ImageLimits | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Decode an image file or in-memory upload into an upright RGB array.

    Args:
        source: A filesystem path, or the raw bytes of an image (e.g. a browser upload).
        limits: Size and shape limits; ``ImageLimits()`` when omitted.
        name: Label used in error messages, e.g. the upload's file name. Defaults to the path,
            or to ``"uploaded image"`` for bytes.

    Returns:
        Array of shape ``(H, W, 3)``, dtype ``uint8``, C-contiguous, after EXIF orientation.

    Raises:
        UnreadablePathError: The path is missing, a directory, not a regular file or unreadable.
        EmptyFileError: The file or the bytes are empty.
        NotAnImageError: The bytes are not an image Loupe reads, whatever the extension says.
        CorruptImageError: The image is truncated or damaged (or failed to decode at all).
        ImageTooLargeError: The header declares more than ``limits.max_pixels`` pixels.
        AspectRatioError: A side is below ``limits.min_side`` or the aspect ratio is absurd.
    """
    limits = limits or ImageLimits()
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "uploaded image"
        if len(source) == 0:
            raise EmptyFileError(f"'{label}' is empty (0 bytes). Upload the image again.")
        return _decode(io.BytesIO(source), label, limits)
    path = Path(source)
    label = name or str(path)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise UnreadablePathError(f"'{label}' is a directory, not an image file.")
        if not stat.S_ISREG(st.st_mode):
            raise UnreadablePathError(f"'{label}' is not a regular file.")
        fp = path.open("rb")
    except FileNotFoundError as exc:
        raise UnreadablePathError(f"'{label}' does not exist. Check the path.") from exc
    except PermissionError as exc:
        raise UnreadablePathError(f"'{label}' cannot be read: permission denied.") from exc
    except OSError as exc:
        raise UnreadablePathError(f"'{label}' cannot be read: {exc.strerror or exc}.") from exc
    with fp:
        if os.fstat(fp.fileno()).st_size == 0:
            raise EmptyFileError(f"'{label}' is empty (0 bytes). Export the image again.")
        return _decode(fp, label, limits)


def _decode(fp: BinaryIO, label: str, limits: ImageLimits) -> np.ndarray:
    """Open lazily, check the header against ``limits``, then fully decode ``fp``."""
    damaged = f"'{label}' is truncated or damaged and cannot be decoded; export it again"
    try:
        # Our own max_pixels check below is the policy; silence Pillow's softer warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp, formats=_PILLOW_FORMATS) as img:
                _check_size(img.size, label, limits)  # header only: nothing decoded yet
                img.load()  # force the full decode: truncation surfaces here
                _apply_orientation(img)
                return _to_rgb(img, label)
    except (ImageTooLargeError, AspectRatioError, NotAnImageError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"'{label}' declares far too many pixels ({exc}). Downscale it before loading."
        ) from exc
    except UnidentifiedImageError as exc:
        fp.seek(0)
        if fp.read(16).startswith(_SIGNATURES):
            raise CorruptImageError(f"{damaged} (its header is broken).") from exc
        raise NotAnImageError(
            f"'{label}' is not an image Loupe can read ({_FORMATS_HINT}), "
            "whatever its extension says."
        ) from exc
    except MemoryError as exc:
        raise ImageTooLargeError(f"'{label}' is too large to decode in memory.") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure on bad input is "corrupt"
        raise CorruptImageError(f"{damaged} ({type(exc).__name__}: {exc}).") from exc


def _check_size(size: tuple[int, int], label: str, limits: ImageLimits) -> None:
    """Refuse an image from its declared ``(width, height)`` alone."""
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"'{label}' is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{limits.max_pixels:,}. Downscale it or raise ImageLimits.max_pixels."
        )
    short, long = min(width, height), max(width, height)
    if short < limits.min_side:
        raise AspectRatioError(
            f"'{label}' is {width}x{height}: a side is below {limits.min_side} pixels, too small "
            "to inspect."
        )
    if long / short > limits.max_aspect:
        raise AspectRatioError(
            f"'{label}' is {width}x{height}: aspect ratio {long / short:.1f} exceeds "
            f"{limits.max_aspect:g}; this is not a camera frame of a part."
        )


def _apply_orientation(img: Image.Image) -> None:
    """Rotate/flip ``img`` in place per its EXIF orientation tag.

    Broken EXIF metadata is ignored rather than refused: the pixels themselves decoded fine.
    """
    with contextlib.suppress(Exception):  # metadata only: keep the pixels as stored
        ImageOps.exif_transpose(img, in_place=True)


def _to_rgb(img: Image.Image, label: str) -> np.ndarray:
    """Convert a decoded image of any mode to ``(H, W, 3)`` uint8, per the module policy."""
    mode = img.mode
    if mode == "F" or mode == "I" or mode.startswith("I;"):
        gray = _gray_to_uint8(np.asarray(img), is_float=mode == "F")
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in img.info:
        mode = "PA"
    try:
        if mode in _ALPHA_MODES:
            rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
            rgb = (rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255  # composite onto black
            return np.ascontiguousarray(rgb, dtype=np.uint8)
        return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    except ValueError as exc:  # Pillow has no conversion for this mode
        raise NotAnImageError(f"'{label}' uses pixel mode {img.mode!r}, not supported.") from exc


def _gray_to_uint8(values: np.ndarray, *, is_float: bool) -> np.ndarray:
    """Map an ``(H, W)`` integer or float array to ``(H, W)`` uint8.

    Integers within 0..65535 use the full-range 16-bit mapping ``round(v / 257)``; anything
    else (floats, negative or wider integers) is min-max scaled over its finite values.
    """
    data = values.astype(np.float64)
    if not is_float and data.size and data.min() >= 0 and data.max() <= 65535:
        return np.rint(data / 257.0).astype(np.uint8)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, np.uint8)
    lo, hi = data[finite].min(), data[finite].max()
    scaled = (data - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(data)
    return np.rint(np.clip(np.where(finite, scaled, 0.0), 0, 255)).astype(np.uint8)

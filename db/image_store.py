"""Content-addressed image files under ``<data dir>/images/``.

A stored path is ``images/<first two hex digits>/<sha256><extension>``, with the extension
sniffed from the file's first bytes. Nothing a user typed (file name, folder) ever reaches a
path. Files are written to a temporary sibling and moved into place with ``os.replace``, so a
reader never sees a half-written image, and identical bytes always land on the same file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path, PurePosixPath

from db.settings import data_dir as default_data_dir

IMAGES_DIR = "images"
UNKNOWN_EXTENSION = ".bin"

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
)


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sniff_extension(data: bytes) -> str:
    """Return the file extension that matches the image format of ``data``.

    Args:
        data: The file's bytes.

    Returns:
        One of ``.png .jpg .bmp .tif .gif .webp``, or ``.bin`` for anything else.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for signature, extension in _SIGNATURES:
        if data.startswith(signature):
            return extension
    return UNKNOWN_EXTENSION


def stored_path_for(digest: str, data: bytes) -> str:
    """Return the relative POSIX path at which bytes with this sha256 are stored.

    Args:
        digest: The 64-character lowercase hex sha256 of ``data``.
        data: The bytes (only their first few bytes are read, for the extension).

    Returns:
        ``images/ab/abcdef....png`` style path, relative to the data directory.

    Raises:
        ValueError: If ``digest`` is not 64 lowercase hex characters.
    """
    if len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return str(PurePosixPath(IMAGES_DIR, digest[:2], digest + sniff_extension(data)))


def absolute_image_path(stored_path: str, data_dir: Path | None = None) -> Path:
    """Resolve a stored path inside the data directory, refusing anything that escapes it.

    Args:
        stored_path: A path from ``Image.stored_path``.
        data_dir: The data directory; default :func:`db.settings.data_dir`.

    Returns:
        The absolute path of the file.

    Raises:
        ValueError: If the path is absolute or leaves the data directory.
    """
    root = (data_dir or default_data_dir()).resolve()
    candidate = (root / stored_path).resolve()
    if PurePosixPath(stored_path).is_absolute() or not candidate.is_relative_to(root):
        raise ValueError(f"stored path escapes the data directory: {stored_path!r}")
    return candidate


def write_image_file(stored_path: str, data: bytes, data_dir: Path | None = None) -> bool:
    """Write ``data`` at ``stored_path`` atomically unless the file is already there.

    Args:
        stored_path: A path from :func:`stored_path_for`.
        data: The bytes to store.
        data_dir: The data directory; default :func:`db.settings.data_dir`.

    Returns:
        ``True`` if the file was written, ``False`` if it already existed.
    """
    target = absolute_image_path(stored_path, data_dir)
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True

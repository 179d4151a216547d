"""The folders on the server that Loupe may read: the roots an admin configures.

Scoring a server folder (Inspect) and the hot folders (``loupe watch``) read files with the
server's rights, so they may only read under the *server folder roots*:
``LOUPE_SERVER_FOLDER_ROOTS`` (absolute paths separated by ``os.pathsep``), or, when it is
unset, the one default root ``<data dir>/incoming``. Nothing outside the data directory is
readable unless an admin says so.

A folder or file is resolved first (symlinks followed, ``..`` removed) and checked after
resolution, so a link inside a root that points outside is refused like the outside path
itself; every file read is resolved and checked on its own, and opened without following a
link swapped in since. A missing folder and a folder outside the roots get the same message
(:class:`ServerFolderError`), which never tells whether a folder exists outside the roots.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from adcore.errors import UnreadablePathError
from adcore.image_io import MAX_FILE_BYTES, read_capped
from db.settings import data_dir

ROOTS_ENV = "LOUPE_SERVER_FOLDER_ROOTS"
DEFAULT_ROOT = "incoming"
"""The default root, under the data directory."""
MAX_FOLDER_FILES = 1000
"""Most image files one server folder may hold to be scored in one batch."""

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_FD_PATHS = Path("/proc/self/fd")


class ServerFolderError(PermissionError):
    """A folder or file that is not under the server folder roots, or a missing folder.

    Both get the same message, so that it does not tell whether a path outside the roots exists.
    """


def server_folder_roots() -> tuple[Path, ...]:
    """The folders this server may read under, resolved (symlinks followed).

    Returns:
        The roots of ``$LOUPE_SERVER_FOLDER_ROOTS``, or ``(<data dir>/incoming,)`` when it is
        unset or empty.

    Raises:
        ServerFolderError: If the variable names a relative path (a configuration error).
    """
    entries = [e.strip() for e in (os.environ.get(ROOTS_ENV) or "").split(os.pathsep)]
    entries = [entry for entry in entries if entry]
    if not entries:
        return (Path(os.path.realpath(data_dir() / DEFAULT_ROOT)),)
    roots = []
    for entry in entries:
        path = Path(entry).expanduser()
        if not path.is_absolute():
            raise ServerFolderError(
                f"{ROOTS_ENV} names {entry!r}: an admin gives absolute paths, separated by "
                f"{os.pathsep!r}."
            )
        roots.append(Path(os.path.realpath(path)))
    return tuple(dict.fromkeys(roots))


def describe_roots(roots: Sequence[Path] | None = None) -> str:
    """The roots as one line of text, e.g. ``/srv/line-2, /data/incoming``."""
    return ", ".join(str(root) for root in (server_folder_roots() if roots is None else roots))


def allowed_folder(
    folder: str | os.PathLike[str],
    *,
    roots: Sequence[Path] | None = None,
    must_exist: bool = True,
) -> Path:
    """Resolve a folder and check that it lies under a root.

    Args:
        folder: An absolute path on the server, as a user typed it.
        roots: The roots; default :func:`server_folder_roots`.
        must_exist: Refuse a folder that does not exist (a hot folder may be created later;
            a path that exists must still be a folder).

    Returns:
        The resolved folder.

    Raises:
        ServerFolderError: If the path is relative, resolves outside every root, or (with
            ``must_exist``) is not an existing folder; the message is the same in every case.
    """
    roots = server_folder_roots() if roots is None else tuple(roots)
    given = Path(folder).expanduser()
    refused = ServerFolderError(
        f"No folder {folder} under the server folders this server may read "
        f"({describe_roots(roots)})."
    )
    if not given.is_absolute():
        raise refused
    resolved = Path(os.path.realpath(given))
    if not _under(resolved, roots):
        raise refused
    if must_exist and not resolved.is_dir():
        raise refused
    if not must_exist and resolved.exists() and not resolved.is_dir():
        raise refused
    return resolved


def allowed_file(
    path: str | os.PathLike[str], *, roots: Sequence[Path] | None = None, name: str | None = None
) -> Path:
    """Resolve a file and check that it lies under a root (whether it exists is not checked).

    Args:
        path: The file.
        roots: The roots; default :func:`server_folder_roots`.
        name: The file's name in the message (default the path).

    Returns:
        The resolved path.

    Raises:
        ServerFolderError: If the path is relative or resolves outside every root.
    """
    roots = server_folder_roots() if roots is None else tuple(roots)
    given = Path(path).expanduser()
    resolved = Path(os.path.realpath(given))
    if not given.is_absolute() or not _under(resolved, roots):
        raise _file_refused(name or str(path), roots)
    return resolved


def read_server_file(
    path: str | os.PathLike[str],
    *,
    roots: Sequence[Path] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    name: str | None = None,
) -> bytes:
    """Read a file under the roots, refusing one over ``max_bytes`` without reading it whole.

    The file is resolved and checked (:func:`allowed_file`), then opened without following a
    link at its last step, and the opened file's own path is checked again where the system
    tells it (``/proc/self/fd``), so a link swapped in after the check is not followed.

    Args:
        path: The file.
        roots: The roots; default :func:`server_folder_roots`.
        max_bytes: Largest file read (default :data:`adcore.image_io.MAX_FILE_BYTES`).
        name: The file's name in messages (default the path).

    Returns:
        The file's bytes.

    Raises:
        ServerFolderError: If the file is not under the roots.
        UnreadablePathError: If the file is missing, unreadable or not a regular file.
        ImageTooLargeError: If the file is larger than ``max_bytes`` (it is not read).
    """
    roots = server_folder_roots() if roots is None else tuple(roots)
    label = name or str(path)
    resolved = allowed_file(path, roots=roots, name=label)
    try:
        fd = os.open(resolved, _OPEN_FLAGS)
    except FileNotFoundError as err:
        raise UnreadablePathError(f"'{label}' does not exist (any more).") from err
    except PermissionError as err:
        raise UnreadablePathError(f"'{label}' cannot be read: permission denied.") from err
    except OSError as err:
        if err.errno == errno.ELOOP:  # a link swapped in after the check
            raise _file_refused(label, roots) from err
        raise UnreadablePathError(f"'{label}' cannot be read: {err.strerror or err}.") from err
    with os.fdopen(fd, "rb") as fp:
        opened = _opened_path(fd)
        if opened is not None and not _under(opened, roots):
            raise _file_refused(label, roots)
        return read_capped(fp, label, max_bytes)


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _file_refused(label: str, roots: Sequence[Path]) -> ServerFolderError:
    return ServerFolderError(
        f"'{label}' is not under the server folders this server may read "
        f"({describe_roots(roots)}): it was not read."
    )


def _opened_path(fd: int) -> Path | None:
    """Where an open file really is, when the system says (Linux), else ``None``."""
    try:
        return Path(os.readlink(_FD_PATHS / str(fd)))
    except OSError:
        return None

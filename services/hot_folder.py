"""A hot folder: every image a station drops into a folder is scored once, then moved away.

:class:`HotFolder` takes the files already in the folder at start (name order), then the new
ones as ``watchdog`` reports them (after their size has stopped changing). Each file is decided
by the project's active model (:class:`services.scoring.predictor.Predictor`) and stored through
:func:`services.inspection.inspect_uploads`, so it joins the review queue, dashboard and
learning loop like an upload, and then moved to ``processed/``, or to ``refused/`` with a
``<name>.reason.txt`` saying why.

Progress is in the database (:mod:`db.hot_folder_files`): a file is claimed before it is
scored, finished as ``processed`` in the very transaction that stores its part and announces
its verdict (all or nothing), and moved last. A restart therefore scores nothing twice and
skips nothing: a finished file still in the folder is only moved; a claimed one whose part was
stored meanwhile (by a watcher of an earlier release, which finished files afterwards) is
finished from the store; one that was not is scored again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adcore.errors import ImageLoadError, ImageTooLargeError
from adcore.image_io import MAX_FILE_BYTES
from db.base import ImageSource
from db.hot_folder_files import claim_file, finish_file, stored_since, taken_file
from db.models import Project
from services.inspection import (
    InspectionRequest,
    StoredPart,
    announce_first_verdict,
    inspect_uploads,
)
from services.scoring.predictor import Predictor
from services.server_folders import ServerFolderError, allowed_folder, read_server_file

log = logging.getLogger("loupe.hot_folder")

PROCESSED, REFUSED = "processed", "refused"
LINK_REFUSED = "a symbolic link, not a file of the hot folder: its target was not read"
OUTSIDE_REFUSED = "it resolves outside the hot folder: it was not read"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
SETTLE_SECONDS = 0.5
"""A new file is taken once its size holds and it was last written this long ago (copy ended)."""


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file: ``processed``, ``refused`` or ``waiting`` (no active model)."""

    name: str
    status: str
    reason: str | None = None
    prediction_id: int | None = None
    scored: bool = False  # False when a restart only finished or moved it


class HotFolder:
    """One project's watched folder.

    Args:
        Session: The application's session factory.
        project_id: The project.
        folder: The folder, under the server folder roots (created if missing).
        detector_for: Loads the detector of a model version's artifact path.
        data_dir: The data directory; default :func:`db.data_dir`.
        settle_seconds: How long a new file must stay unchanged before it is taken.
        max_bytes: Largest file read; a larger one is refused unread.

    Raises:
        ServerFolderError: If the folder is not under the roots, or its ``processed/`` or
            ``refused/`` is not a folder of its own (e.g. a link).
        OSError: If the folders cannot be created.
    """

    def __init__(
        self,
        Session: sessionmaker[Session],  # noqa: N803 - the app's session factory
        *,
        project_id: int,
        folder: str | Path,
        detector_for: Callable[[str], Any],
        data_dir: Path | None = None,
        settle_seconds: float = SETTLE_SECONDS,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.Session = Session
        self.project_id = project_id
        self.folder = allowed_folder(folder, must_exist=False)
        self.detector_for = detector_for
        self.data_dir = data_dir
        self.settle_seconds = settle_seconds
        self.max_bytes = max_bytes
        for sub in (PROCESSED, REFUSED):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
            if not self._own_folder(sub):
                raise ServerFolderError(
                    f"{self.folder / sub} is not a folder of the hot folder itself (a link?): "
                    "remove it and start again."
                )

    def _own_folder(self, sub: str) -> bool:
        """Whether ``processed/`` or ``refused/`` is a real folder inside the hot folder."""
        path = self.folder / sub
        return not path.is_symlink() and path.is_dir() and path.resolve() == path

    # ------------------------------------------------------------------ one file

    def take(self, path: Path) -> FileOutcome | None:
        """Score (or finish) one file and move it; ``None`` if it is gone or not ours.

        A link, a file resolving elsewhere or a file over :attr:`max_bytes` is refused (moved
        to ``refused/`` with its reason) without being read.
        """
        if path.parent != self.folder or path.name.startswith("."):
            return None
        if path.is_symlink():
            return self._refuse(path, LINK_REFUSED)
        if not path.is_file():
            return None
        if path.resolve().parent != self.folder:
            return self._refuse(path, OUTSIDE_REFUSED)
        try:
            data = read_server_file(
                path, roots=(self.folder,), max_bytes=self.max_bytes, name=path.name
            )
        except ImageTooLargeError as err:
            return self._refuse(path, str(err))
        except ServerFolderError:  # became a link after the look above
            return self._refuse(path, LINK_REFUSED)
        except (ImageLoadError, OSError) as err:
            log.warning("Cannot read %s: %s", path, err)
            return None
        sha256 = hashlib.sha256(data).hexdigest()
        with self.Session() as session, session.begin():
            row = taken_file(session, self.project_id, str(self.folder), path.name, sha256)
            if row is not None and row.status != "scoring":  # finished before a restart
                outcome = FileOutcome(path.name, row.status, row.reason, row.prediction_id)
                self._move(path, outcome, sha256)
                return outcome
            if row is not None:
                stored = stored_since(session, self.project_id, sha256, row.created_at)
                if stored is not None:  # scored, then the watcher stopped: finish, do not rescore
                    finish_file(
                        session,
                        row.id,
                        status=PROCESSED,
                        image_id=stored[0],
                        prediction_id=stored[1],
                    )
                    outcome = FileOutcome(path.name, PROCESSED, prediction_id=stored[1])
                    self._move(path, outcome, sha256)
                    return outcome
                row_id = row.id
            else:
                row_id = None
            project = session.get(Project, self.project_id)
            version = project.active_model_version if project is not None else None
            if version is None:
                return FileOutcome(path.name, "waiting", "the project has no active model yet")
            version_id, artifact = version.id, version.artifact_path
            if row_id is None:
                row_id = claim_file(session, self.project_id, str(self.folder), path.name, sha256)
        predictor = Predictor.load(
            self.Session,
            project_id=self.project_id,
            model_version_id=version_id,
            detector=self.detector_for(artifact),
        )

        def finish(session: Session, stored: StoredPart) -> None:
            """In the part's storing transaction: its verdict message, and the file finished."""
            announce_first_verdict(session, stored)
            finish_file(
                session,
                row_id,
                status=PROCESSED,
                image_id=stored.image_id,
                prediction_id=stored.prediction_id,
            )

        request = InspectionRequest(
            predictor, source=ImageSource.FOLDER.value, announce=finish, data_dir=self.data_dir
        )
        (result,) = inspect_uploads(self.Session, request, [(path.name, data)])
        if not result.ok:
            with self.Session() as session, session.begin():
                finish_file(session, row_id, status=REFUSED, reason=result.error)
        status = PROCESSED if result.ok else REFUSED
        outcome = FileOutcome(path.name, status, result.error, result.prediction_id, scored=True)
        self._move(path, outcome, sha256)
        return outcome

    def _refuse(self, path: Path, reason: str) -> FileOutcome:
        """Move a file to ``refused/`` unread, with its reason (no row: nothing was read)."""
        outcome = FileOutcome(path.name, REFUSED, reason)
        log.warning("Refused %s: %s", path, reason)
        tag = hashlib.sha256(f"{path.name}:{time.time_ns()}".encode()).hexdigest()
        self._move(path, outcome, tag)
        return outcome

    def _move(self, path: Path, outcome: FileOutcome, sha256: str) -> None:
        """Move the file to ``processed/`` or ``refused/`` (with its reason file).

        A name already taken there gets the first 8 hex digits of ``sha256`` (the file's). A
        link is moved as a link: its target is not touched. Nothing is written through a link
        found in ``processed/`` or ``refused/``.
        """
        sub = PROCESSED if outcome.status == PROCESSED else REFUSED
        if not self._own_folder(sub):
            log.error("%s is no longer a folder of the hot folder: %s left", sub, path.name)
            return
        target_dir = self.folder / sub
        target = target_dir / path.name
        if target.exists() or target.is_symlink():  # another file of that name came before
            target = target_dir / f"{path.stem}-{sha256[:8]}{path.suffix}"
        os.replace(path, target)  # same file system; a link is renamed, not followed
        if outcome.status != PROCESSED:
            reason = outcome.reason or "refused"
            _write_new(target.with_name(target.name + ".reason.txt"), reason + "\n")

    # ------------------------------------------------------------------ the folder

    def scan(self) -> list[FileOutcome]:
        """Take every file now in the folder, in name order (what arrived while stopped)."""
        outcomes = []
        for path in sorted(self.folder.iterdir()):
            outcome = self.take(path)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def run(self, stop: threading.Event, on_outcome: Callable[[FileOutcome], None] | None = None):
        """Scan, then take new files as they arrive, until ``stop`` is set."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        arrived: queue.Queue[Path] = queue.Queue()

        class Arrivals(FileSystemEventHandler):
            def on_created(self, event: FileSystemEvent) -> None:
                if not event.is_directory:
                    arrived.put(Path(str(event.src_path)))

            def on_moved(self, event: FileSystemEvent) -> None:
                if not event.is_directory:
                    arrived.put(Path(str(event.dest_path)))

        observer = Observer()
        observer.schedule(Arrivals(), str(self.folder), recursive=False)
        observer.start()
        report = on_outcome or (lambda outcome: None)
        waiting: dict[Path, int] = {}  # arrived, not yet quiet: path -> size when last seen
        try:
            for outcome in self.scan():  # after the observer starts: nothing slips between
                report(outcome)
            while not stop.is_set():
                try:
                    waiting.setdefault(arrived.get(timeout=0.1), -1)
                    while True:  # everything that arrived meanwhile
                        waiting.setdefault(arrived.get_nowait(), -1)
                except queue.Empty:
                    pass
                for path in self._quiet(waiting):
                    if stop.is_set():
                        break
                    outcome = self.take(path)
                    if outcome is not None:
                        report(outcome)
        finally:
            observer.stop()
            observer.join(timeout=5)

    def _quiet(self, waiting: dict[Path, int]) -> list[Path]:
        """The waiting files whose copy has ended, in arrival order (taken off ``waiting``).

        A file is quiet when its size is the one seen at the previous look and it was last
        written ``settle_seconds`` ago or more. Every waiting file settles at once, so a burst
        of files costs one settle time, not one each. A file that is gone is dropped.
        """
        now, ready = time.time(), []
        for path, seen in list(waiting.items()):
            try:
                stat = path.stat(follow_symlinks=False)  # a link is refused, not followed
            except OSError:
                del waiting[path]
                continue
            if stat.st_size == seen and now - stat.st_mtime >= self.settle_seconds:
                del waiting[path]
                ready.append(path)
            else:
                waiting[path] = stat.st_size
        return ready


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, replacing a link there instead of writing through it."""
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)

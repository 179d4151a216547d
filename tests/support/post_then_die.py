"""A station's post whose process is killed (SIGKILL) inside the part's storing transaction.

Run by ``tests/services/test_inspection_all_or_nothing.py`` in a child process::

    python tests/support/post_then_die.py DATABASE_URL KEY_ID PROJECT_ID STATION PART_ID IMAGE

with the repository on ``PYTHONPATH`` and the data directory in ``$LOUPE_DATA_DIR``. The
stand-in detector scores (no model is loaded). Once every row of the part (image, prediction,
station post, outbox message) is written to the database and before the transaction commits,
the process kills itself: it never exits on its own.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session
from stand_in_detector import stand_in_for, storing

from db.engine import create_engine_for_url, make_session_factory
from services.station_inspection import Station, inspect_station_part


def main(argv: list[str]) -> int:
    """Post the part as the station; the process dies in its storing transaction."""
    url, key_id, project_id, station, part_id, image = argv
    factory = make_session_factory(create_engine_for_url(url))

    def die(session: Session) -> None:
        if storing(session):
            session.flush()  # every row of the part is in the database, uncommitted
            os.kill(os.getpid(), signal.SIGKILL)

    event.listen(factory, "before_commit", die)
    inspect_station_part(
        factory,
        Station(int(key_id), int(project_id), station),
        Path(image).read_bytes(),
        filename="part.png",
        part_id=part_id,
        captured_at=None,
        detector_for=stand_in_for,
    )
    return 1  # not reached: the storing transaction kills the process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

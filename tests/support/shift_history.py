"""A small inspection history for the shift report tests, with its answers worked out by hand.

One model version (threshold 1.0). Day D = Monday 3 March 2025; the early shift is 06:00-14:00
UTC. Predictions at D 06:1x unless said; reviews on D (times UTC):

    image  score  verdict  reviews                                  in the early shift
    1      2.0    defect   ines defect 07:00                        TP
    2      0.5    good     ines defect 08:00                        missed
    3      1.5    defect   mona good 09:00                          false alarm
    4      0.2    good     mona good 09:30                          TN
    5      0.3    good     ines good 15:00 (late shift)             -
    6      1.2    defect   ines good 07:30, mona defect 10:00       TP (mona's label is current)
    7      0.4    good     mona defect 11:00, undone 11:05          - (no current label)
    8      0.1    good     ines good 12:00; scored D-1 20:00, audit TN (drawn the day before)
    9      0.6    good     mona defect 13:00; scored 06:30, audit   missed (audit: 1 of 1)
    10     -      -        ines defect 08:30 (never scored)          reviewed, no verdict

Early shift: 8 parts scored (1-7, 9), 3 flagged (1, 3, 6); 8 parts reviewed (1-4, 6, 8-10);
10 labels given; FNR 2 of 4 (2, 9 missed of 1, 2, 6, 9); FPR 1 of 3 (3 of 3, 4, 8);
overturned 2, 3, 9; audit miss rate 1 of 1. ines: 5 labels (seconds 10..50, median 30),
4 parts, 3 defects, 1 overturned; mona: 5 labels (seconds 5..13, median 9), 4 parts,
2 defects, 2 overturned. Labels per hour from 06:00: 0, 2, 2, 2, 1, 1, 1, 1.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from db import Review

DAY = date(2025, 3, 3)
D = datetime(2025, 3, 3, tzinfo=UTC)


def at(hours: float) -> datetime:
    """D plus ``hours``."""
    return D + timedelta(hours=hours)


def build_shift_history(
    factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> dict[str, int]:
    """Store the history above; return ``{"img1": id, ..., "ines": id, "mona": id}``."""
    ines, mona = make_user("ines"), make_user("mona")
    version = add_version(factory, project_id, threshold=1.0)
    images = {n: add_image(factory, project_id, n) for n in range(1, 11)}
    scores = {1: 2.0, 2: 0.5, 3: 1.5, 4: 0.2, 5: 0.3, 6: 1.2, 7: 0.4}
    for n, score in scores.items():
        add_prediction(factory, images[n], version, score, at=at(6 + n / 60))
    add_prediction(factory, images[8], version, 0.1, at=at(-4), audit=True)
    add_prediction(factory, images[9], version, 0.6, at=at(6.5), audit=True)
    with factory() as session, session.begin():

        def review(n: int, user: int, label: str, hours: float, seconds: float) -> Review:
            row = Review(
                image_id=images[n],
                reviewer_id=user,
                label=label,
                seconds_spent=seconds,
                created_at=at(hours),
            )
            session.add(row)
            session.flush()
            return row

        review(1, ines, "defect", 7, 10)
        review(6, ines, "good", 7.5, 20)
        review(2, ines, "defect", 8, 30)
        review(10, ines, "defect", 8.5, 40)
        review(8, ines, "good", 12, 50)
        review(3, mona, "good", 9, 5)
        review(4, mona, "good", 9.5, 7)
        review(6, mona, "defect", 10, 9)
        undone = review(7, mona, "defect", 11, 11)
        session.add(
            Review(
                image_id=images[7],
                reviewer_id=mona,
                is_undo=True,
                supersedes_id=undone.id,
                created_at=at(11 + 5 / 60),
            )
        )
        review(9, mona, "defect", 13, 13)
        review(5, ines, "good", 15, 60)
    return {"ines": ines, "mona": mona, **{f"img{n}": image for n, image in images.items()}}

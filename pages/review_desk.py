"""The review desk: the Review page's part, map and Good / Defect / Undo keys (not a page).

The inspector's presses never wait for the server. The browser side (``review_desk/desk.js``,
a Streamlit custom component) holds the next :data:`LOOKAHEAD` parts of the review queue with
their images, shows the next one the moment a key is pressed, and keeps every press in an
outbox until the server has recorded it:

* each press carries its own id and the id of the part that was on screen when it was pressed
  (the action is bound to its part, never to what the next run loads);
* :func:`record_presses` (the component's change callback, run before the page) records each
  press once, in order, remembering the press ids it has handled in session state; a press it
  cannot record is sent back as refused with the reason, and the part comes back on screen;
* :func:`desk_data` sends the queue's next parts; a part's images travel once per browser
  instance of the desk and prediction of the part (a re-scored part's map is sent again), as
  data URLs (JPEG part, JPEG colour layer of its anomaly map on its model version's one scale,
  the reference good part, the colour bar) with the captions that go with them.

The panels under the desk follow the desk: the browser is the one source of truth for the part
on screen. It says which part it shows with every change (``current``), :func:`review_desk`
returns that part (:class:`ShownPart`), and the page draws its panels in a container keyed by
its image id (:func:`panels_key`). The browser shows only the container of the part on screen,
hides what a container still holds of another part until its own panels are drawn, and says
"Explaining <name>…" meanwhile: the desk moves on at once, the panels come with the next run.

Recording is the review service's (:mod:`services.reviewing`): a press calls it and shows what
it returns. Slow follow-ups (instant learning, re-scoring) run as jobs of the job worker; the
page follows them and refreshes the queue when they end (:mod:`pages.page_tasks`).
"""

from __future__ import annotations

import base64
import io
import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image as PILImage

import db
from db.projects import get_project
from db.review_queue import QueueItem, queue_size, review_queue
from pages.action_feedback import ACTION_ERRORS
from pages.db_session import session_factory, transaction
from pages.review_recording import record_label, show_review_outcome
from pages.tab_state import signed_in
from services import reviewing

log = logging.getLogger(__name__)

DESK_KEY = "review_desk"
HANDLED_KEY = "review_desk_handled"  # OrderedDict press id -> PressOutcome
SENT_KEY = "review_desk_sent"  # {"instance": str | None, "ids": {(image id, prediction id)}}
LOOKAHEAD = 12
"""Parts the browser holds ahead of the inspector."""
MAX_SIDE = 1024
"""Longest side of the images sent (zoom shows detail up to this resolution)."""
MAX_HANDLED = 2000
"""Press ids remembered per session (far more than an outbox can hold)."""
JPEG_QUALITY = 88
PANELS_KEY = "desk_panels_"
"""Key prefix of the container of a part's panels under the desk (its image id follows)."""

_ASSETS = Path(__file__).with_name("review_desk")
DESK = st.components.v2.component(
    "loupe_review_desk",
    css=(_ASSETS / "desk.css").read_text(encoding="utf-8"),
    js=(_ASSETS / "desk.js").read_text(encoding="utf-8"),
)


# --------------------------------------------------------------------------- presses


@dataclass(frozen=True)
class ShownPart:
    """The part on the desk's screen, as the browser last said (the panels under it are its).

    Attributes:
        image_id: The part's image id (the desk's ``current``).
        prediction_id: Its prediction in the review queue.
        name: Its file name, as the desk shows it.
    """

    image_id: int
    prediction_id: int
    name: str


def panels_key(image_id: int) -> str:
    """The key of the container of a part's panels (``desk.js`` shows only the current one's)."""
    return f"{PANELS_KEY}{image_id}"


@dataclass(frozen=True)
class PressOutcome:
    """What became of one press.

    Attributes:
        recorded: Whether it was recorded (else refused, and the part comes back).
        message: Why it was refused, or a notice about what was recorded (or None).
    """

    recorded: bool
    message: str | None = None


def outbox() -> list[dict[str, Any]]:
    """The presses the browser is waiting to see recorded (from the component's state)."""
    presses = desk_sync().get("outbox") or []
    return [press for press in presses if isinstance(press, dict) and press.get("press")]


def desk_sync() -> dict[str, Any]:
    """The browser's last ``sync`` state: ``instance``, ``outbox``, ``current`` (or ``{}``)."""
    state = st.session_state.get(DESK_KEY) or {}
    sync = state.get("sync") if hasattr(state, "get") else None
    return sync if isinstance(sync, dict) else {}


def record_presses(project_id: int) -> None:
    """Record the outbox's new presses, once each and in order (the component's callback)."""
    handled: OrderedDict[str, PressOutcome] = st.session_state.setdefault(
        HANDLED_KEY, OrderedDict()
    )
    for press in outbox():
        press_id = str(press["press"])
        if press_id in handled:
            continue
        handled[press_id] = apply_press(project_id, press)
    while len(handled) > MAX_HANDLED:
        handled.popitem(last=False)


def apply_press(project_id: int, press: dict[str, Any]) -> PressOutcome:
    """Record one press (a label, an undo, or a page accepted as good)."""
    kind = press.get("kind")
    if kind == "undo":
        try:
            undone = reviewing.undo_last(session_factory(), user_id=_user_id())
        except ACTION_ERRORS as err:
            return PressOutcome(False, f"could not undo: {err}")
        return PressOutcome(True) if undone is not None else PressOutcome(False, "nothing to undo")
    if kind == "accept_page":
        return accept_page(project_id, press.get("image_ids"))
    return apply_label(project_id, press)


def apply_label(project_id: int, press: dict[str, Any]) -> PressOutcome:
    """Record a G / D press against its part (with its defect type, box and note)."""
    label = press.get("label")
    try:
        image_id = int(press.get("image_id"))
    except (TypeError, ValueError):
        return PressOutcome(False, "the press named no part")
    if label not in (db.Label.GOOD.value, db.Label.DEFECT.value):
        return PressOutcome(False, f"unknown label {label!r}")
    is_defect = label == db.Label.DEFECT.value
    defect_type = press.get("defect_type") if is_defect else None
    region = press.get("region") if is_defect and isinstance(press.get("region"), dict) else None
    seconds = press.get("seconds")
    error = record_label(
        image_id,
        label,
        defect_type=(str(defect_type)[:64] or None) if defect_type else None,
        note=(str(press.get("note"))[:500] or None) if press.get("note") else None,
        seconds_spent=float(seconds) if isinstance(seconds, int | float) else None,
        region=region,
    )
    if error is not None:
        return PressOutcome(False, error)
    return PressOutcome(True)


def accept_page(project_id: int, image_ids: Any) -> PressOutcome:
    """Accept the passed parts of the reviewer's page as good (when a manager allows it)."""
    if not isinstance(image_ids, list):
        return PressOutcome(False, "the press named no parts")
    try:
        done = reviewing.accept_page(
            session_factory(), user_id=_user_id(), project_id=project_id, image_ids=image_ids
        )
    except (*ACTION_ERRORS, TypeError) as err:
        return PressOutcome(False, str(err))
    if not done.accepted:
        return PressOutcome(False, done.message)
    show_review_outcome(done.notices)
    return PressOutcome(True, done.message)


def _user_id() -> int:
    """The signed-in user's id (the service checks the role and that the account is active)."""
    info = signed_in()
    if info is None:
        raise PermissionError("Please sign in again.")
    return int(info["id"])


def press_outcomes() -> dict[str, list]:
    """For the presses still in the outbox: ``acked`` ids, ``refused`` and ``notices``."""
    handled: OrderedDict[str, PressOutcome] = st.session_state.get(HANDLED_KEY, OrderedDict())
    outcomes: dict[str, list] = {"acked": [], "refused": [], "notices": []}
    for press in outbox():
        press_id = str(press["press"])
        outcome = handled.get(press_id)
        if outcome is None:
            continue
        if not outcome.recorded:
            outcomes["refused"].append({"press": press_id, "message": outcome.message})
            continue
        outcomes["acked"].append(press_id)
        if outcome.message:
            outcomes["notices"].append({"press": press_id, "message": outcome.message})
    return outcomes


# --------------------------------------------------------------------------- the parts


def desk_data(project_id: int) -> dict[str, Any]:
    """What the browser needs: the queue's next parts (images once per instance and prediction)."""
    from services.map_scales import prediction_map_scale
    from services.reference_parts import reference_part
    from services.review_options import review_options

    instance = desk_sync().get("instance")
    sent = st.session_state.get(SENT_KEY)
    if not sent or sent.get("instance") != instance:
        sent = {"instance": instance, "ids": set()}
        st.session_state[SENT_KEY] = sent
    parts = []
    with transaction() as session:
        remaining = queue_size(session, project_id)
        items = review_queue(session, project_id, limit=LOOKAHEAD)
        project = get_project(session, project_id)
        defect_types = list(project.defect_types or []) if project is not None else []
        accept_allowed = project is not None and review_options(project).accept_page_as_good
        for item in items:
            prediction = db.get_prediction(session, item.prediction_id)
            part = part_facts(item, prediction)
            if (item.image_id, item.prediction_id) not in sent["ids"]:
                scale = prediction_map_scale(session, item.prediction_id)
                reference = reference_part(session, item.prediction_id)
                part |= part_images(
                    item.stored_path,
                    prediction.anomaly_map_path if prediction is not None else None,
                    scale,
                )
                if reference is not None:
                    part["reference"] = image_data_url(str(reference.path))
                    part["reference_caption"] = reference.caption
            parts.append(part)
    for part in parts:
        if part.get("image") or part.get("unreadable"):
            sent["ids"].add((part["id"], part["prediction_id"]))
    return {
        "instance": instance,
        "parts": parts,
        "remaining": remaining,
        **press_outcomes(),
        "defect_types": defect_types,
        "accept_page": accept_allowed,
        "panels_class": f"st-key-{PANELS_KEY}",  # Streamlit's class of a keyed container
    }


def part_facts(item: QueueItem, prediction: Any) -> dict[str, Any]:
    """The text about a queued part (no images)."""
    facts = f"Score {item.score:.4g} · threshold {item.threshold:.4g}"
    if item.defect_probability is not None and item.probability_threshold is not None:
        facts += (
            f" · p(defect) {item.defect_probability:.2f} "
            f"(flag at {item.probability_threshold:.2f}, feedback scorer)"
        )
    explanation = (prediction.explanation or {}) if prediction is not None else {}
    return {
        "id": item.image_id,
        "prediction_id": item.prediction_id,
        "name": item.original_name,
        "verdict": item.verdict,
        "audit": bool(item.audit),
        "facts": facts,
        "sentence": explanation.get("text") if isinstance(explanation, dict) else None,
    }


def part_images(stored_path: str, anomaly_map_path: str | None, scale: Any) -> dict[str, Any]:
    """The part's image, its map's colour layer, the colour bar and its caption (data URLs)."""
    image_file = str(db.absolute_image_path(stored_path))  # cache keys name the real file
    out: dict[str, Any] = {"image": image_data_url(image_file)}
    if out["image"] is None:
        return {"unreadable": "missing or corrupt file"}
    if anomaly_map_path:
        out["heat"] = heat_data_url(image_file, anomaly_map_path, scale)
    if scale is not None:
        out["scale_bar"] = colour_bar_url(scale)
        out["scale_caption"] = scale.caption
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def image_data_url(path: str) -> str | None:
    """A stored (or absolute) image as a JPEG data URL, at most :data:`MAX_SIDE` px; or None."""
    pixels = _pixels(path)
    return None if pixels is None else _jpeg_url(pixels)


@st.cache_data(show_spinner=False, max_entries=64)
def heat_data_url(image_file: str, anomaly_map_path: str, scale: Any) -> str | None:
    """The colour layer of a part's anomaly map (full opacity, on ``scale``) as a JPEG data URL."""
    from adcore.anomaly_maps import overlay_image
    from adcore.map_scale import own_scale
    from services.map_store import load_anomaly_map

    pixels = _pixels(image_file)
    if pixels is None:
        return None
    try:
        anomaly_map = load_anomaly_map(anomaly_map_path)
    except (OSError, ValueError) as err:
        log.warning("Cannot read the anomaly map %s: %s", anomaly_map_path, err)
        return None
    layer = overlay_image(pixels, anomaly_map, 1.0, scale=scale or own_scale(anomaly_map))
    return _jpeg_url(layer)


@st.cache_data(show_spinner=False, max_entries=16)
def colour_bar_url(scale: Any) -> str:
    """A scale's colour bar as a PNG data URL."""
    from adcore.anomaly_maps import colour_bar

    buffer = io.BytesIO()
    PILImage.fromarray(colour_bar(scale)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pixels(path: str) -> np.ndarray | None:
    from adcore.errors import ImageLoadError
    from adcore.image_io import load_image

    candidate = Path(path)
    file = candidate if candidate.is_absolute() else db.absolute_image_path(path)
    try:
        pixels = load_image(file)
    except (ImageLoadError, ValueError, OSError) as err:
        log.warning("Cannot read the image %s: %s", path, err)
        return None
    height, width = pixels.shape[:2]
    if max(height, width) > MAX_SIDE:
        ratio = MAX_SIDE / max(height, width)
        size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        pixels = np.asarray(PILImage.fromarray(pixels).resize(size, PILImage.Resampling.LANCZOS))
    return pixels


def _jpeg_url(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB").save(
        buffer, format="JPEG", quality=JPEG_QUALITY
    )
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- the desk


def review_desk(project_id: int) -> ShownPart | None:
    """Mount the desk; return the part the browser shows, if it is in the queue.

    Before the browser has said which part it shows, the first part of the queue is taken.
    A part the browser shows but the queue no longer holds gets no panels: the browser moves
    on to the next part when this run's queue reaches it, and says so.
    The outbox is read here too (a no-op when the change callback has handled it): state set
    by other means than the browser, such as a page test, is recorded the same way.
    """
    record_presses(project_id)
    data = desk_data(project_id)
    DESK(
        key=DESK_KEY,
        data=data,
        default={"sync": {}},
        on_sync_change=partial(record_presses, project_id),
    )
    current = desk_sync().get("current", data["parts"][0]["id"] if data["parts"] else None)
    for part in data["parts"]:
        if part["id"] == current:
            return ShownPart(part["id"], part["prediction_id"], part["name"])
    return None

"""A model version's ``metrics`` JSON (``ModelVersion.metrics``): its typed records, in one place.

Training jobs, the gate, threshold changes, activations, instant updates and recalibrations all
write into the same JSON document. This module is the only code that reads or writes it:

* **Readers**: :func:`read_metrics` gives a :class:`ModelMetrics`, a read-only view with one
  typed property per record (:attr:`~ModelMetrics.gate`, :attr:`~ModelMetrics.status_history`,
  ...), the fit's free-form :attr:`~ModelMetrics.facts` and the :meth:`~ModelMetrics.summary`
  the versions table shows.
* **Writers**: :func:`new_version_metrics` (the document of a new version: the fit's facts plus
  its gate, scorer detector or lineage), :func:`instant_update_metrics` (an instantly updated
  copy of a version), and :func:`record_status_change`, :func:`record_threshold_change`,
  :func:`record_gate_override`, :func:`redate_status_changes` (appends to a stored version).

The document holds the facts of the fit that made the version, free-form per job kind
(``n_train``, ``threshold_rule``, ``heldout``, ...), and these keys, which Loupe's rules read back:

* ``gate``: :class:`GateRecord`, the gate's verdict on a candidate (its training job);
* ``gate_overrides``: :class:`GateOverride` list, promotions the gate refused;
* ``status_history``: :class:`StatusChange` list, activations, retirements, rollbacks;
* ``threshold_history``: :class:`ThresholdChange` list, a manager's threshold changes;
* ``detector``: :class:`ScorerDetector`, the detector a feedback scorer was trained on;
* ``instant_updates`` (and ``instant_update_count``): :class:`InstantUpdate` list;
* ``same_model_as``: version ids, the lineage of a recalibrated version's model.

The stored JSON is the same as before these types existed: readers accept every document
written so far (a key missing or ``null``, an entry with keys of its own), and writers only add
keys to a new document or append to a stored list, never rewriting what is stored (but for the
demo's simulated dates, :func:`redate_status_changes`). The module imports only the mapped
tables: storage modules, services, workers and pages all read and write through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.base import ModelStatus
from db.models import ModelVersion

__all__ = [
    "GATE_KEY",
    "GATE_OVERRIDES_KEY",
    "INSTANT_UPDATES_KEY",
    "INSTANT_UPDATE_COUNT_KEY",
    "RECORD_KEYS",
    "ROLLBACK",
    "SAME_MODEL_AS_KEY",
    "SCORER_DETECTOR_KEY",
    "STATUS_HISTORY_KEY",
    "THRESHOLD_HISTORY_KEY",
    "GateDecision",
    "GateOverride",
    "GateRecord",
    "InstantUpdate",
    "ModelMetrics",
    "ScorerDetector",
    "StatusChange",
    "ThresholdChange",
    "instant_update_metrics",
    "new_version_metrics",
    "read_metrics",
    "record_gate_override",
    "record_status_change",
    "record_threshold_change",
    "redate_status_changes",
]

THRESHOLD_HISTORY_KEY = "threshold_history"
"""Every threshold change, oldest first (:class:`ThresholdChange`)."""

STATUS_HISTORY_KEY = "status_history"
"""Every status change of the version, oldest first (:class:`StatusChange`)."""

GATE_KEY = "gate"
"""The gate's verdict on a candidate (:class:`GateRecord`), written by its training job."""

GATE_OVERRIDES_KEY = "gate_overrides"
"""Promotions of a candidate the gate refused (:class:`GateOverride`)."""

SCORER_DETECTOR_KEY = "detector"
"""A feedback scorer's detector: the version it was trained on (:class:`ScorerDetector`)."""

INSTANT_UPDATES_KEY = "instant_updates"
"""An instantly updated version's updates: one entry per update (:class:`InstantUpdate`)."""

INSTANT_UPDATE_COUNT_KEY = "instant_update_count"
"""How many entries :data:`INSTANT_UPDATES_KEY` holds."""

SAME_MODEL_AS_KEY = "same_model_as"
"""A recalibrated version: the lineage of the version whose model it reuses (version ids)."""

RECORD_KEYS: frozenset[str] = frozenset(
    {
        GATE_KEY,
        GATE_OVERRIDES_KEY,
        STATUS_HISTORY_KEY,
        THRESHOLD_HISTORY_KEY,
        SCORER_DETECTOR_KEY,
        INSTANT_UPDATES_KEY,
        INSTANT_UPDATE_COUNT_KEY,
        SAME_MODEL_AS_KEY,
    }
)
"""The keys of the typed records; every other key of the document is a fact of the fit."""

ROLLBACK = "rollback"
"""The ``action`` of a status change that restored an earlier version."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict: whether the candidate passes, why not, and notes for the manager.

    Attributes:
        passed: Whether it may be promoted without an override.
        reasons: One sentence per failed check.
        notes: Facts for the manager (how the threshold was chosen, ...).
    """

    passed: bool
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: Any) -> GateDecision:
        """Read a stored ``decision`` (a missing one has not passed)."""
        raw = raw if isinstance(raw, Mapping) else {}
        return cls(
            passed=bool(raw.get("passed")),
            reasons=tuple(str(reason) for reason in raw.get("reasons") or ()),
            notes=tuple(str(note) for note in raw.get("notes") or ()),
        )


@dataclass(frozen=True)
class GateRecord:
    """The gate's verdict on a candidate, stored by its training job.

    The candidate and the then active version of its family measured on the same held-out
    data (:func:`adcore.gate.gate_record`, or an explainer's
    :func:`services.training.explainer_jobs.explainer_gate_record`).

    Attributes:
        decision: The verdict.
        active_version_id: The version that was active at evaluation time (``None``: none).
        candidate: The candidate's numbers (rates and counts, or an explainer's scores).
        active: The active version's numbers on the same data, with ``version_id`` and
            ``version`` (``None`` when nothing was active).
        heldout: Facts about the held-out data (counts, the digests' hash).
        untuned: An adapter's untuned base model on the same data, else ``None``.
        document: The stored record, as it is.
    """

    decision: GateDecision
    active_version_id: int | None
    candidate: dict[str, Any] | None
    active: dict[str, Any] | None
    heldout: dict[str, Any]
    untuned: dict[str, Any] | None
    document: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> GateRecord:
        """Read a stored gate record."""
        active = raw.get("active")
        return cls(
            decision=GateDecision.from_json(raw.get("decision")),
            active_version_id=active.get("version_id") if _is_map(active) else None,
            candidate=_dict_or_none(raw.get("candidate")),
            active=_dict_or_none(active),
            heldout=dict(raw.get("heldout") or {}),
            untuned=_dict_or_none(raw.get("untuned")),
            document=dict(raw),
        )

    def to_json(self) -> dict[str, Any]:
        """The stored record (a copy)."""
        return dict(self.document)


@dataclass(frozen=True)
class GateOverride:
    """A manager's promotion of a candidate the gate refused.

    Attributes:
        at: When (ISO time).
        by: The manager's name.
        by_id: The manager's user id.
        reason: Why they promoted it anyway.
        refusals: What the gate refused it for.
        gate: The gate record at the time (``{}`` when there was none).
    """

    at: str
    by: str
    by_id: int | None
    reason: str
    refusals: tuple[str, ...]
    gate: dict[str, Any]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> GateOverride:
        """Read a stored override."""
        return cls(
            at=str(raw.get("at", "")),
            by=str(raw.get("by", "")),
            by_id=raw.get("by_id"),
            reason=str(raw.get("reason", "")),
            refusals=tuple(raw.get("refusals") or ()),
            gate=dict(raw.get("gate") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON entry appended to :data:`GATE_OVERRIDES_KEY`."""
        return {
            "at": self.at,
            "by": self.by,
            "by_id": self.by_id,
            "reason": self.reason,
            "refusals": list(self.refusals),
            "gate": dict(self.gate),
        }


@dataclass(frozen=True)
class StatusChange:
    """One status change of a version (activation, retirement).

    Attributes:
        at: When (ISO time).
        status: The new status (``"active"``, ``"retired"``, ...).
        by: Who: a user's name, or ``"system"``.
        note: Why, in words (instant updates).
        action: ``"promote"`` or ``"rollback"`` for an activation by a manager.
        from_version: The version a rollback replaced (``None``: none was active).
        override: ``{"reason", "refusals"}`` of a promotion the gate refused.
        simulated: The demo's simulated history dated it (:func:`redate_status_changes`).
        extra: The stored entry's other keys, if any.
    """

    at: str
    status: str
    by: str
    note: str | None = None
    action: str | None = None
    from_version: int | None = None
    override: dict[str, Any] | None = None
    simulated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("at", "status", "by", "note", "action", "from_version", "override", "simulated")

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StatusChange:
        """Read a stored entry."""
        return cls(
            at=str(raw.get("at", "")),
            status=str(raw.get("status", "")),
            by=str(raw.get("by", "")),
            note=raw.get("note"),
            action=raw.get("action"),
            from_version=raw.get("from_version"),
            override=_dict_or_none(raw.get("override")),
            simulated=bool(raw.get("simulated", False)),
            extra={k: v for k, v in raw.items() if k not in cls._FIELDS},
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON entry appended to :data:`STATUS_HISTORY_KEY` (unset fields left out)."""
        entry: dict[str, Any] = {"at": self.at, "status": self.status, "by": self.by}
        if self.note is not None:
            entry["note"] = self.note
        if self.action is not None:
            entry["action"] = self.action
        if self.action == ROLLBACK or self.from_version is not None:
            entry["from_version"] = self.from_version
        if self.override is not None:
            entry["override"] = dict(self.override)
        if self.simulated:
            entry["simulated"] = True
        return {**entry, **self.extra}


@dataclass(frozen=True)
class ThresholdChange:
    """One change of a version's decision threshold.

    Attributes:
        at: When (ISO time).
        by: The manager's name.
        by_id: The manager's user id.
        old: The threshold before (``None``: none was set).
        new: The threshold after.
    """

    at: str
    by: str
    by_id: int | None
    old: float | None
    new: float

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ThresholdChange:
        """Read a stored entry."""
        return cls(
            at=str(raw.get("at", "")),
            by=str(raw.get("by", "")),
            by_id=raw.get("by_id"),
            old=raw.get("old"),
            new=raw.get("new"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON entry appended to :data:`THRESHOLD_HISTORY_KEY`."""
        return {"at": self.at, "by": self.by, "by_id": self.by_id, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class ScorerDetector:
    """The detector version a feedback scorer was trained on.

    Attributes:
        version_id: Its id.
        version: Its version number.
        kind: Its model kind (``"patchcore"``, ``"clip"``, ...).
    """

    version_id: int | None
    version: int | None = None
    kind: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ScorerDetector:
        """Read a stored record."""
        return cls(raw.get("version_id"), raw.get("version"), raw.get("kind"))

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under :data:`SCORER_DETECTOR_KEY` (and in the scorer's snapshot)."""
        return {"version_id": self.version_id, "version": self.version, "kind": self.kind}


@dataclass(frozen=True)
class InstantUpdate:
    """One instant update: reviewed Good parts learned into a copy of the active version.

    Attributes:
        at: When (ISO time).
        by: The acting user's name.
        by_id: Their user id.
        review_ids: The Good reviews that confirmed the added parts.
        image_ids: The added images.
        image_sha256: Their digests.
        parent_version: The updated version's number.
        parent_version_id: Its id (the lineage: :func:`db.model_families.detector_lineage`).
        details: Facts about the update (bank sizes, patches added, scores), stored at the
            entry's top level.
    """

    at: str
    by: str
    by_id: int | None
    review_ids: tuple[int, ...]
    image_ids: tuple[int, ...]
    image_sha256: tuple[str, ...]
    parent_version: int | None
    parent_version_id: int | None
    details: dict[str, Any] = field(default_factory=dict)

    _FIELDS = (
        "at",
        "by",
        "by_id",
        "review_ids",
        "image_ids",
        "image_sha256",
        "parent_version",
        "parent_version_id",
    )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> InstantUpdate:
        """Read a stored entry."""
        return cls(
            at=str(raw.get("at", "")),
            by=str(raw.get("by", "")),
            by_id=raw.get("by_id"),
            review_ids=tuple(raw.get("review_ids") or ()),
            image_ids=tuple(raw.get("image_ids") or ()),
            image_sha256=tuple(raw.get("image_sha256") or ()),
            parent_version=raw.get("parent_version"),
            parent_version_id=raw.get("parent_version_id"),
            details={k: v for k, v in raw.items() if k not in cls._FIELDS},
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON entry appended to :data:`INSTANT_UPDATES_KEY`."""
        return {
            "at": self.at,
            "by": self.by,
            "by_id": self.by_id,
            "review_ids": list(self.review_ids),
            "image_ids": list(self.image_ids),
            "image_sha256": list(self.image_sha256),
            "parent_version": self.parent_version,
            "parent_version_id": self.parent_version_id,
            **self.details,
        }


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ModelMetrics:
    """A read-only, typed view of one version's metrics document.

    Entries that are not JSON objects (never written by Loupe) are skipped.

    Attributes:
        document: The stored document (a copy; ``{}`` for a version without one).
    """

    document: dict[str, Any]

    @property
    def gate(self) -> GateRecord | None:
        """The gate's verdict on the version, or ``None`` when it was never evaluated."""
        raw = self.document.get(GATE_KEY)
        return GateRecord.from_json(raw) if _is_map(raw) else None

    @property
    def gate_overrides(self) -> list[GateOverride]:
        """The promotions the gate refused, oldest first."""
        return [GateOverride.from_json(e) for e in self._entries(GATE_OVERRIDES_KEY)]

    @property
    def status_history(self) -> list[StatusChange]:
        """The version's status changes, oldest first."""
        return [StatusChange.from_json(e) for e in self._entries(STATUS_HISTORY_KEY)]

    @property
    def threshold_history(self) -> list[ThresholdChange]:
        """The version's threshold changes, oldest first."""
        return [ThresholdChange.from_json(e) for e in self._entries(THRESHOLD_HISTORY_KEY)]

    @property
    def scorer_detector(self) -> ScorerDetector | None:
        """A feedback scorer's detector version, or ``None`` (not a scorer, or not recorded)."""
        raw = self.document.get(SCORER_DETECTOR_KEY)
        return ScorerDetector.from_json(raw) if _is_map(raw) else None

    @property
    def instant_updates(self) -> list[InstantUpdate]:
        """The instant updates that made this version, oldest first."""
        return [InstantUpdate.from_json(e) for e in self._entries(INSTANT_UPDATES_KEY)]

    @property
    def same_model_as(self) -> list[int]:
        """A recalibrated version: the ids of the versions whose model it reuses, newest first."""
        return list(self.document.get(SAME_MODEL_AS_KEY) or [])

    @property
    def lineage_parents(self) -> list[int]:
        """The ids of the versions whose model this one reuses, its direct parent first.

        An instant update's parents (newest update first), then a recalibration's
        :attr:`same_model_as`; entries that are not ids are skipped. Empty for a model fitted
        from scratch (a new lineage: :mod:`db.model_lineages`).
        """
        parents = [update.parent_version_id for update in reversed(self.instant_updates)]
        parents += self.same_model_as
        return [p for p in parents if isinstance(p, int) and not isinstance(p, bool)]

    @property
    def was_active(self) -> bool:
        """Whether the version was ever active (its status history says so)."""
        return any(change.status == ModelStatus.ACTIVE for change in self.status_history)

    @property
    def facts(self) -> dict[str, Any]:
        """The fit's free-form facts: every key but the typed records'."""
        return {k: v for k, v in self.document.items() if k not in RECORD_KEYS}

    def summary(self) -> dict[str, int | float | str | bool]:
        """The document's scalar values (numbers, text, flags) by key, for a table."""
        return {
            name: value
            for name, value in self.document.items()
            if isinstance(value, int | float | str | bool)
        }

    def _entries(self, key: str) -> list[Mapping[str, Any]]:
        return [entry for entry in self.document.get(key) or [] if _is_map(entry)]


def read_metrics(version: ModelVersion) -> ModelMetrics:
    """The typed view of a version's metrics document."""
    return ModelMetrics(_stored(version))


# --------------------------------------------------------------------------- writing


def new_version_metrics(
    facts: Mapping[str, Any],
    *,
    gate: GateRecord | Mapping[str, Any] | None = None,
    scorer_detector: ScorerDetector | None = None,
    same_model_as: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The metrics document of a new version: its fit's facts and its typed records.

    Args:
        facts: Free-form, JSON-ready facts of the fit (must not use a record's key).
        gate: The gate's verdict on the candidate (a record, or the JSON
            :func:`adcore.gate.gate_record` returned).
        scorer_detector: A feedback scorer's detector version.
        same_model_as: A recalibration: the lineage of the version whose model it reuses.

    Returns:
        The document to register the version with
        (:func:`db.model_versions.register_model_version`).

    Raises:
        ValueError: If a fact uses a record's key.
    """
    taken = RECORD_KEYS & set(facts)
    if taken:
        raise ValueError(f"Facts may not use the metrics' record keys: {sorted(taken)}.")
    document = dict(facts)
    if same_model_as is not None:
        document[SAME_MODEL_AS_KEY] = [int(version_id) for version_id in same_model_as]
    if gate is not None:
        document[GATE_KEY] = gate.to_json() if isinstance(gate, GateRecord) else dict(gate)
    if scorer_detector is not None:
        document[SCORER_DETECTOR_KEY] = scorer_detector.to_json()
    return document


def instant_update_metrics(parent: ModelVersion, update: InstantUpdate) -> dict[str, Any]:
    """The metrics document of an instantly updated copy of ``parent``.

    The parent's document without its status history (the copy has its own), with ``update``
    appended to its instant updates, their count, the parent's number and, when the update says
    so (``details["bank_size_after"]``), the memory bank's new size.
    """
    document = {k: v for k, v in _stored(parent).items() if k != STATUS_HISTORY_KEY}
    updates = [*document.get(INSTANT_UPDATES_KEY, []), update.to_json()]
    document[INSTANT_UPDATES_KEY] = updates
    document[INSTANT_UPDATE_COUNT_KEY] = len(updates)
    document["parent_version"] = update.parent_version
    if "bank_size_after" in update.details:
        document["memory_bank_size"] = update.details["bank_size_after"]
    return document


def record_status_change(version: ModelVersion, change: StatusChange) -> None:
    """Append a status change to the version's history (the caller sets ``version.status``)."""
    _append(version, STATUS_HISTORY_KEY, change.to_json())


def record_threshold_change(version: ModelVersion, change: ThresholdChange) -> None:
    """Append a threshold change to the version's history (the caller sets the threshold)."""
    _append(version, THRESHOLD_HISTORY_KEY, change.to_json())


def record_gate_override(version: ModelVersion, override: GateOverride) -> None:
    """Append a promotion the gate refused to the version's overrides."""
    _append(version, GATE_OVERRIDES_KEY, override.to_json())


def redate_status_changes(version: ModelVersion, moments: Mapping[str, datetime]) -> None:
    """Date the version's changes to a status at a simulated moment (the demo's history).

    Every stored change to a status in ``moments`` gets that moment as its time and
    ``"simulated": true``; the other changes stay as they are.
    """
    document = _stored(version)
    document[STATUS_HISTORY_KEY] = [
        {**entry, "at": moments[entry["status"]].isoformat(), "simulated": True}
        if _is_map(entry) and entry.get("status") in moments
        else entry
        for entry in document.get(STATUS_HISTORY_KEY) or []
    ]
    version.metrics = document


# --------------------------------------------------------------------------- helpers


def _stored(version: ModelVersion) -> dict[str, Any]:
    """A shallow copy of the version's document (``{}`` when it has none)."""
    return dict(version.metrics or {})


def _append(version: ModelVersion, key: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the list under ``key``, assigning a new document.

    A new dict, because JSON columns do not track in-place edits.
    """
    document = _stored(version)
    document[key] = [*document.get(key, []), entry]
    version.metrics = document


def _is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None

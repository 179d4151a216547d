"""The keys of a model version's ``metrics`` JSON (``ModelVersion.metrics``), in one place.

Training jobs, the gate, threshold changes, activations, instant updates and recalibrations all
write into the same JSON document. Its keys live here, in a module that imports nothing, so the
storage modules that read and write them (:mod:`db.model_versions`, :mod:`db.model_families`,
:mod:`db.instant_updates`, :mod:`db.model_candidates`) and the services, workers and pages share
them without importing each other for a constant.
"""

from __future__ import annotations

THRESHOLD_HISTORY_KEY = "threshold_history"
"""Every threshold change, oldest first: ``{"at", "by", "by_id", "old", "new"}``."""

STATUS_HISTORY_KEY = "status_history"
"""Every status change of the version, oldest first: ``{"at", "status", "by", ...}``."""

GATE_KEY = "gate"
"""The gate's verdict on a candidate (:mod:`adcore.gate`), written by its training job."""

GATE_OVERRIDES_KEY = "gate_overrides"
"""Promotions of a candidate the gate refused: who, when, the reason, the refusals, the gate."""

SCORER_DETECTOR_KEY = "detector"
"""A feedback scorer's detector: the detector version it was trained on (``version_id``)."""

INSTANT_UPDATES_KEY = "instant_updates"
"""An instantly updated version's updates: one entry per reviewed Good part it learned from."""

INSTANT_UPDATE_COUNT_KEY = "instant_update_count"
"""How many entries :data:`INSTANT_UPDATES_KEY` holds."""

SAME_MODEL_AS_KEY = "same_model_as"
"""A recalibrated version: the lineage of the version whose model it reuses."""

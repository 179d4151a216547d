"""Which vision-language model a source names, read from its ``config.json`` without loading it.

Used by :mod:`adcore.explain.language_model` (to dispatch a folder to the vision-language
explainer) and :mod:`adcore.explain.vision_language` (to load it). Also holds the per-source
opt-in for models whose code ships with their weights (MiniCPM-V): the server's
``LOUPE_TRUST_REMOTE_CODE`` environment variable lists the folders (or hub ids) allowed to run
it, separated by ``os.pathsep``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adcore.errors import ExplainerUnavailable

PROCESSOR_MODEL_TYPES = {
    "idefics3": "Idefics3",
    "smolvlm": "SmolVLM",
    "qwen2_vl": "Qwen2-VL",
    "qwen2_5_vl": "Qwen2.5-VL",
}
"""``model_type`` values loaded with transformers' own processor and model classes."""
PROCESSOR_ARCHITECTURES = frozenset(
    {
        "Idefics3ForConditionalGeneration",
        "SmolVLMForConditionalGeneration",
        "Qwen2VLForConditionalGeneration",
        "Qwen2_5_VLForConditionalGeneration",
    }
)
REMOTE_CODE_MODEL_TYPES = {"minicpmv": "MiniCPM-V"}
"""``model_type`` values whose code ships with the weights (``trust_remote_code``)."""
REMOTE_CODE_ARCHITECTURE_PREFIX = "MiniCPMV"

PROCESSOR_KIND = "processor"
"""Kind of a model loaded with ``AutoProcessor`` + ``AutoModelForImageTextToText``."""
CHAT_KIND = "minicpmv"
"""Kind of a MiniCPM-V model queried with its own ``chat`` method."""

TRUST_REMOTE_CODE_ENV = "LOUPE_TRUST_REMOTE_CODE"
"""Environment variable listing the sources (``os.pathsep``-separated) allowed to run the
model code shipped with their weights."""

SUPPORTED = ", ".join([*PROCESSOR_MODEL_TYPES.values(), *REMOTE_CODE_MODEL_TYPES.values()])
"""The supported families, for messages."""


def read_model_config(path_or_id: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a local folder or of a hub id in the local cache.

    Raises:
        ExplainerUnavailable: If there is no such folder (or cached id), no ``config.json``,
            or it is not a JSON object.
    """
    config_file = model_config_file(path_or_id)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExplainerUnavailable(f"Cannot read {config_file}: {error}") from error
    if not isinstance(config, dict):
        raise ExplainerUnavailable(f"{config_file} does not hold a JSON object.")
    return config


def model_config_file(path_or_id: str | Path) -> Path:
    """Where the ``config.json`` of a folder (or a cached hub id) is.

    Raises:
        ExplainerUnavailable: If the folder does not exist (and no such id is cached) or it
            has no ``config.json``.
    """
    folder = Path(path_or_id).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ExplainerUnavailable(
                f"No model in {folder}: config.json is missing. Save a model there with "
                "save_pretrained() (model and processor), or copy a hub snapshot."
            )
        return folder / "config.json"
    cached = cached_hub_config(str(path_or_id))
    if cached is None:
        raise ExplainerUnavailable(
            f"No model at {str(path_or_id)!r}: the folder does not exist and no such model is "
            "in the local Hugging Face cache (nothing is downloaded)."
        )
    return cached


def cached_hub_config(model_id: str) -> Path | None:
    """The cached ``config.json`` of hub id ``owner/name``, or None (never downloads)."""
    if model_id.count("/") != 1 or model_id.startswith(("/", ".", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with transformers
        return None
    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def vision_language_kind(config: Mapping[str, Any]) -> str | None:
    """``PROCESSOR_KIND``, ``CHAT_KIND`` or None (not a supported vision-language model).

    Args:
        config: A model's ``config.json`` (``model_type`` and ``architectures`` are read).
    """
    model_type = str(config.get("model_type") or "").lower()
    architectures = [str(name) for name in config.get("architectures") or []]
    if model_type in PROCESSOR_MODEL_TYPES or PROCESSOR_ARCHITECTURES.intersection(architectures):
        return PROCESSOR_KIND
    if model_type in REMOTE_CODE_MODEL_TYPES or any(
        name.startswith(REMOTE_CODE_ARCHITECTURE_PREFIX) for name in architectures
    ):
        return CHAT_KIND
    return None


def looks_multimodal(config: Mapping[str, Any]) -> bool:
    """Whether a config describes a model with a vision tower (supported or not)."""
    return any(key in config for key in ("vision_config", "vision_tower", "mm_vision_tower"))


def remote_code_allowed(source: str | Path) -> bool:
    """Whether ``source`` is listed in ``LOUPE_TRUST_REMOTE_CODE`` (the per-source opt-in)."""
    listed = [
        entry.strip() for entry in os.environ.get(TRUST_REMOTE_CODE_ENV, "").split(os.pathsep)
    ]
    wanted = _normalised(source)
    return any(entry and _normalised(entry) == wanted for entry in listed)


def _normalised(source: str | Path) -> str:
    """A folder as an absolute resolved path; a hub id unchanged."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source).strip()


def remote_code_refusal(source: str | Path) -> str:
    """The message shown when a model needs ``trust_remote_code`` and it was not allowed."""
    return (
        f"{source!s} is a MiniCPM-V model: loading it runs the Python code shipped with its "
        "weights (trust_remote_code), which Loupe refuses by default. If you trust that code, "
        f"list the folder in the {TRUST_REMOTE_CODE_ENV} environment variable of the server "
        "and restart it."
    )


def vision_language_source(path_or_id: str | Path, *, trust_remote_code: bool) -> str | None:
    """The kind of vision-language model at ``path_or_id``, found from its config only.

    Args:
        path_or_id: A folder (or cached hub id) holding ``config.json``.
        trust_remote_code: Whether this source may run the code shipped with its weights.

    Returns:
        ``PROCESSOR_KIND`` or ``CHAT_KIND``; None for a text-only model.

    Raises:
        ExplainerUnavailable: If the config cannot be read, it describes a vision-language model
            Loupe does not support, or the model needs remote code that is not allowed.
    """
    config = read_model_config(path_or_id)
    kind = vision_language_kind(config)
    if kind is None and looks_multimodal(config):
        raise ExplainerUnavailable(
            f"{path_or_id!s} is a vision-language model of type {config.get('model_type')!r}, "
            f"which Loupe does not support; supported: {SUPPORTED}."
        )
    if kind == CHAT_KIND and not trust_remote_code:
        raise ExplainerUnavailable(remote_code_refusal(path_or_id))
    return kind

"""Saving and loading models as safetensors + JSON, never pickle.

A model directory (``models/<project>/<version>/``) holds two files:

* ``model.safetensors``: every tensor (memory bank, weights). Its metadata carries the sha256 of
  the canonical JSON document below, so an edited ``config.json`` is detected.
* ``config.json``: format, detector kind, hyper-parameters, backbone, threshold, training-set hash
  and the sha256 of ``model.safetensors``, so edited tensors are detected.

Both files are written to a temporary sibling directory first and moved into place with one
``os.replace``: a reader never sees a half-written model. Pickled checkpoints (``.pt``, ``.pth``,
``.ckpt``, ``.pkl``) are refused outright: loading them can run arbitrary code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from adcore.errors import ModelFileError

FORMAT = "loupe-model/1"
CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class SavedModel:
    """A model read back from disk.

    Attributes:
        document: The parsed ``config.json`` (format, kind, config, threshold, ...).
        tensors: Name -> tensor, on the CPU.
    """

    document: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def kind(self) -> str:
        """The detector kind the model was saved by (e.g. ``patchcore``)."""
        return str(self.document["kind"])

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the detector's saved config."""
        return dict(self.document["config"])


def _canonical(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "tensors_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in chunks)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def save_model(
    directory: str | os.PathLike,
    *,
    kind: str,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model directory atomically.

    Args:
        directory: Target directory (created; its parent too).
        kind: Detector kind, e.g. ``"patchcore"``.
        config: JSON-serialisable hyper-parameters needed to rebuild the model.
        tensors: Name -> tensor; stored contiguous on the CPU.
        extra: More JSON-serialisable facts (threshold, training-set hash, metrics...).
        overwrite: Replace an existing directory (else refuse).

    Returns:
        The directory path.
    """
    target = Path(directory)
    if target.exists() and not overwrite:
        raise ModelFileError(f"Model directory already exists: {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"format": FORMAT, "kind": kind, "config": config, **(extra or {})}
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        meta = {"config_sha256": hashlib.sha256(_canonical(document)).hexdigest()}
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(cpu, str(tmp / TENSORS_FILE), metadata=meta)
        document["tensors_sha256"] = file_sha256(tmp / TENSORS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_document(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory, for reading facts without the tensors.

    Only the format is checked: the hashes are checked by :func:`load_model`, so use this for
    display, never to build a model.

    Raises:
        ModelFileError: No ``config.json``, not JSON, or not a Loupe model document.
    """
    config_path = Path(directory) / CONFIG_FILE
    if not config_path.is_file():
        raise ModelFileError(f"{Path(directory)} has no {CONFIG_FILE}")
    try:
        document = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelFileError(f"{config_path}: unknown format (expected {FORMAT!r})")
    return document


def load_model(
    directory: str | os.PathLike,
    *,
    kind: str | None = None,
    expected_training_hash: str | None = None,
) -> SavedModel:
    """Read and verify a model directory.

    Args:
        directory: A directory written by :func:`save_model`.
        kind: If given, the detector kind the caller expects.
        expected_training_hash: If given, the training-set hash the model must have been fit on.

    Returns:
        The verified document and tensors.

    Raises:
        ModelFileError: Missing files, a pickled checkpoint, a bad format, or any hash mismatch.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ModelFileError(f"No model directory at {root}")
    config_path, tensors_path = root / CONFIG_FILE, root / TENSORS_FILE
    if not tensors_path.is_file():
        pickles = [p.name for p in root.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES]
        if pickles:
            raise ModelFileError(
                f"{root} holds pickled checkpoints ({', '.join(pickles)}); Loupe refuses to load "
                "pickles because they can run arbitrary code. Re-export as safetensors."
            )
        raise ModelFileError(f"{root} has no {TENSORS_FILE}")
    document = read_document(root)
    if kind is not None and document.get("kind") != kind:
        raise ModelFileError(f"{root} holds a {document.get('kind')!r} model, not {kind!r}")
    if file_sha256(tensors_path) != document.get("tensors_sha256"):
        raise ModelFileError(f"{tensors_path} does not match the hash in {CONFIG_FILE}: refused")
    try:
        from safetensors import safe_open

        with safe_open(str(tensors_path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(tensors_path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"{tensors_path} is not a readable safetensors file: {err}") from err
    if meta.get("config_sha256") != hashlib.sha256(_canonical(document)).hexdigest():
        raise ModelFileError(f"{config_path} was changed after the model was saved: refused")
    if expected_training_hash is not None and (
        document.get("training_hash") != expected_training_hash
    ):
        raise ModelFileError(f"{root} was trained on other data than expected: refused")
    return SavedModel(document, tensors)

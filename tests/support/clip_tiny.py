"""A tiny randomly initialised open_clip ViT for the CLIP detector tests (no downloads).

Imported as ``from clip_tiny import ...``. The architecture is registered with open_clip under
:data:`TINY_CLIP` from a JSON config, and :func:`write_tiny_checkpoint` writes its random
weights to a safetensors file: that file plays the "local checkpoint path".
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

TINY_CLIP = "loupe-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
"""32x32 input, 8x8 patches (a 4x4 grid), width 32, two layers per tower."""


def register_tiny_clip(directory: Path) -> str:
    """Register :data:`TINY_CONFIG` with open_clip (a JSON file in ``directory``)."""
    path = directory / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    if TINY_CLIP not in open_clip.list_models():
        open_clip.add_model_config(path)
    return TINY_CLIP


def write_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """Random weights of the tiny model as a safetensors checkpoint."""
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def save_tiny_clip(root: Path) -> Path:
    """Register the tiny model with open_clip and write its random weights, both in ``root``.

    Returns:
        The checkpoint, ``root / "tiny.safetensors"``.
    """
    register_tiny_clip(root)
    return write_tiny_checkpoint(root / "tiny.safetensors")


class NetworkGuard:
    """Records (and refuses) every socket connection attempted while installed."""

    def __init__(self) -> None:
        self.attempts: list[object] = []

    def install(self, monkeypatch) -> NetworkGuard:
        """Refuse socket connections for the test (undone with ``monkeypatch``); ``self``."""

        def refuse(_sock, address, *args, **kwargs):
            self.attempts.append(address)
            raise OSError(f"network access attempted in a test: {address}")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)
        monkeypatch.setattr(
            socket, "create_connection", lambda address, *a, **k: refuse(None, address)
        )
        return self

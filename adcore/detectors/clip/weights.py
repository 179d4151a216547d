"""Find and load open_clip weights without any network access.

A CLIP model is named by an open_clip architecture (``ViT-B-16-plus-240``) plus a source of
weights: either a local checkpoint file (``.safetensors``, or a ``.bin``/``.pt`` state dict that
``torch.load(weights_only=True)`` can read) or an open_clip pretrained tag (``laion400m_e32``)
whose file is already in a local cache:

* the Hugging Face hub cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``) for tags
  that open_clip fetches from the hub, or
* ``~/.cache/clip/<file name of the release URL>`` for tags fetched from a URL,
* or ``cache_dir`` when given (both layouts are looked for there).

Nothing is ever downloaded: a tag whose file is not cached raises
:class:`~adcore.errors.WeightsNotFoundError` saying where to put the file. Only ViT models with
open_clip's own text tower are supported (a timm or Hugging Face tower would need downloads and
has no class token to take windows from).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adcore.errors import WeightsNotFoundError
from adcore.persistence import file_sha256

_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class ClipWeights:
    """Where a CLIP model's weights are, resolved without loading them.

    Attributes:
        model_name: open_clip architecture name.
        pretrained: The tag or path as given.
        checkpoint: The local checkpoint file.
        tag_config: open_clip's pretrained config for a tag (empty for a plain path).
    """

    model_name: str
    pretrained: str
    checkpoint: Path
    tag_config: dict[str, Any]


def _model_config(model_name: str) -> dict[str, Any]:
    import open_clip

    if not model_name or model_name.startswith(("hf-hub:", "local-dir:")):
        raise WeightsNotFoundError(
            f"CLIP model {model_name!r}: give an open_clip architecture name such as "
            "ViT-B-16-plus-240 and the weights with --clip-pretrained"
        )
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise WeightsNotFoundError(
            f"Unknown CLIP model {model_name!r}; open_clip knows e.g. ViT-B-16-plus-240, "
            "ViT-B-16, ViT-L-14 (see open_clip.list_models())"
        )
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    resnet = isinstance(vision.get("layers"), list | tuple)
    if "timm_model_name" in vision or "hf_model_name" in text or resnet:
        raise WeightsNotFoundError(
            f"CLIP model {model_name!r} is not supported: Loupe needs a ViT image tower and "
            "open_clip's own text tower (e.g. ViT-B-16-plus-240, ViT-B-16, ViT-L-14)"
        )
    return config


def _looks_like_path(pretrained: str) -> bool:
    return (
        os.sep in pretrained
        or "/" in pretrained
        or pretrained.lower().endswith(_CHECKPOINT_SUFFIXES)
        or pretrained.startswith(("~", "."))
    )


def _cached_tag_file(tag_config: dict[str, Any], cache_dir: str | None) -> Path | None:
    """The cached file for an open_clip tag: the release-URL cache first, then the hub cache.

    The URL file comes first because it is exactly the tagged checkpoint (open_clip's hub
    entry for some tags, e.g. ``ViT-B-16-plus-240/laion400m_e32``, points at a sibling epoch).
    """
    url = tag_config.get("url", "")
    if url:
        base = Path(cache_dir) if cache_dir else Path("~/.cache/clip").expanduser()
        candidate = base / os.path.basename(url)
        if candidate.is_file():
            return candidate
    hub = tag_config.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # no hub client: only the release-URL cache can hold the file
            return None
        if hub.endswith("/"):
            repo_id, filename = hub.rstrip("/"), "open_clip_pytorch_model.bin"
        else:
            repo_id, filename = os.path.split(hub)
        names = [filename]  # open_clip prefers a safetensors twin when the hub has one
        if filename == "open_clip_pytorch_model.bin":
            names.insert(0, "open_clip_model.safetensors")
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    return None


def resolve_clip_weights(
    model_name: str, pretrained: str | os.PathLike | None, cache_dir: str | None = None
) -> ClipWeights:
    """Find the local checkpoint for a model and a tag or path, without reading it.

    Args:
        model_name: open_clip architecture name.
        pretrained: open_clip pretrained tag, or a path to a checkpoint file.
        cache_dir: Extra cache folder to look in for tags (default: the standard caches).

    Returns:
        The resolved :class:`ClipWeights`.

    Raises:
        WeightsNotFoundError: Unknown or unsupported model, unknown tag, missing file.
    """
    import open_clip

    _model_config(model_name)
    source = str(pretrained or "").strip()
    if not source:
        raise WeightsNotFoundError(
            f"No weights for CLIP model {model_name}: pass --clip-pretrained with an open_clip "
            "tag (e.g. laion400m_e32) or a local checkpoint file"
        )
    if _looks_like_path(source) or Path(source).expanduser().is_file():
        path = Path(source).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"CLIP checkpoint file not found: {path}")
        return ClipWeights(model_name, source, path.resolve(), {})
    tag_config = open_clip.get_pretrained_cfg(model_name, source)
    if not tag_config:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        known = ", ".join(tags) if tags else "none"
        raise WeightsNotFoundError(
            f"{source!r} is neither a checkpoint file nor an open_clip tag of {model_name} "
            f"(known tags: {known})"
        )
    found = _cached_tag_file(tag_config, cache_dir)
    hub = tag_config.get("hf_hub", "")
    if found is None:
        where = " or ".join(
            f"{label} {value}"
            for label, value in (("the file", tag_config.get("url")), ("the hub repo", hub))
            if value
        )
        raise WeightsNotFoundError(
            f"CLIP weights {model_name}/{source} are not in the local cache and Loupe does not "
            f"download them. Fetch {where or 'the checkpoint'} on a connected machine and pass "
            "the file with --clip-pretrained PATH (see docs/clip.md)"
        )
    return ClipWeights(model_name, source, found.resolve(), dict(tag_config))


def clip_unavailable(
    model_name: str, pretrained: str | os.PathLike | None, cache_dir: str | None = None
) -> str | None:
    """Why this CLIP model cannot be used here, or None when its weights are available.

    Cheap (no file is read): suitable for greying out an option in the UI.
    """
    try:
        import open_clip  # noqa: F401
    except ImportError:
        return "The open_clip_torch package is not installed"
    try:
        resolve_clip_weights(model_name, pretrained, cache_dir)
    except WeightsNotFoundError as err:
        return str(err)
    return None


def checkpoint_sha256(path: Path) -> str:
    """Hex sha256 of a checkpoint, cached per (path, size, mtime) for this process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


@functools.lru_cache(maxsize=4)
def _tokenizer(model_name: str) -> Any:
    """open_clip's tokenizer of a model (stateless, so shared; building one reads the BPE)."""
    import open_clip

    return open_clip.get_tokenizer(model_name)


def load_clip(
    model_name: str,
    pretrained: str | os.PathLike | None,
    *,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
) -> tuple[Any, Any, ClipWeights]:
    """Build an open_clip model from local weights only.

    Args:
        model_name: open_clip architecture name.
        pretrained: Tag (already cached) or checkpoint path.
        device: Torch device.
        cache_dir: Extra cache folder for tags.

    Returns:
        (the CLIP model in eval mode, its tokenizer, the resolved weights).

    Raises:
        WeightsNotFoundError: Anything that keeps the weights from loading.
    """
    import open_clip

    weights = resolve_clip_weights(model_name, pretrained, cache_dir)
    preprocess = {
        k: weights.tag_config[k] for k in ("mean", "std") if k in weights.tag_config
    } or None
    try:
        model = open_clip.create_model(
            model_name,
            pretrained=str(weights.checkpoint),
            device=device,
            force_quick_gelu=bool(weights.tag_config.get("quick_gelu", False)),
            force_preprocess_cfg=preprocess,
            weights_only=True,
        )
        tokenizer = _tokenizer(model_name)
    except Exception as err:  # open_clip raises RuntimeError/KeyError/pickle errors alike
        raise WeightsNotFoundError(
            f"Could not load CLIP weights {weights.checkpoint} into {model_name}: "
            f"{str(err).splitlines()[0][:300] if str(err) else type(err).__name__}"
        ) from err
    return model.eval(), tokenizer, weights

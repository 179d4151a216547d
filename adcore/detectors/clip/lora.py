"""Adapting the CLIP detector to a product: LoRA + learnable prompt context (AnomalyCLIP spirit).

With some labelled parts (good and defective), two small sets of parameters are trained while
every CLIP weight stays frozen:

* LoRA adapters (``peft``) on the attention projections (``nn.MultiheadAttention``: the fused
  q/k/v input projection and the output projection) of the image and/or text tower;
* learnable, object-agnostic prompt context (Zhou et al., "AnomalyCLIP", ICLR 2024): the two
  states are ``[V1..Vn] object.`` and ``[W1..Wn] damaged object.``, where the ``n`` context
  token embeddings per state are parameters.

The loss is image-level: cross-entropy of the normal/anomalous softmax of the class-token
embedding against the part's label. After training the learned state embeddings replace the
prompt-ensemble ones in the detector; adapters are saved with the detector (only the adapter
tensors: the CLIP weights stay referenced, not copied).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora.layer import MultiheadAttention as LoraMultiheadAttention
from torch import nn

from adcore.detectors.base import (
    ImageSource,
    Progress,
    known_fields,
    load_many,
    report,
    to_tensor_batch,
)
from adcore.errors import DatasetError, ModelFileError

if TYPE_CHECKING:
    from adcore.detectors.clip.torch_model import ClipAnomalyModel

ADAPTER_PREFIX = "adapter."
_TOWER_PATTERNS = {
    "visual": r"visual\.transformer\.resblocks\.\d+\.attn",
    "text": r"transformer\.resblocks\.\d+\.attn",
}


@dataclass(frozen=True)
class ClipAdapterConfig:
    """Adapter shape and training settings.

    Attributes:
        rank: LoRA rank.
        alpha: LoRA scaling numerator (the update is ``alpha / rank * B A``).
        towers: Towers that get LoRA: ``"visual"`` and/or ``"text"``.
        n_context: Learnable context tokens per state.
        epochs: Passes over the labelled parts.
        learning_rate: AdamW learning rate.
        batch_size: Parts per step.
        seed: Seed of the initialisation and the shuffling.
    """

    rank: int = 8
    alpha: float = 16.0
    towers: tuple[str, ...] = ("visual", "text")
    n_context: int = 4
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 8
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipAdapterConfig:
        """The config saved with an adapter; unknown keys are ignored.

        Raises:
            ValueError: On an unknown tower, or a rank or context length below 1.
        """
        config = cls(**known_fields(cls, data, tuples=("towers",)))
        unknown = set(config.towers) - set(_TOWER_PATTERNS)
        if unknown or config.rank < 1 or config.n_context < 1:
            raise ValueError(f"Bad adapter settings: towers {config.towers}, rank {config.rank}")
        return config


@dataclass(frozen=True)
class AdapterReport:
    """What adapter training did.

    Attributes:
        n_images: Labelled parts used.
        seconds: Wall time.
        losses: Mean loss before training, then after each epoch.
        trainable_parameters: Number of trained scalars (LoRA + context).
        skipped: (name, reason) for every input that could not be loaded.
    """

    n_images: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    trainable_parameters: int = 0
    skipped: tuple[tuple[str, str], ...] = ()


class PromptContext(nn.Module):
    """Learnable object-agnostic prompts for the normal and anomalous states.

    Args:
        clip: The open_clip ``CLIP`` model whose text tower encodes the prompts.
        tokenizer: Its tokenizer.
        n_context: Learnable context tokens per state.
    """

    def __init__(self, clip: Any, tokenizer: Any, n_context: int) -> None:
        super().__init__()
        self.clip = [clip]  # a plain list: not a submodule, so its weights are not ours
        slots = " ".join(["X"] * n_context)
        ids = tokenizer([f"{slots} object.", f"{slots} damaged object."])
        marker = int(tokenizer(["X"])[0, 1])
        if not bool((ids[:, 1 : 1 + n_context] == marker).all()):
            raise ValueError("The tokenizer does not give one token per context slot")
        self.n_context = n_context
        self.register_buffer("token_ids", ids, persistent=False)
        width = clip.token_embedding.weight.shape[1]
        self.context = nn.Parameter(0.02 * torch.randn(2, n_context, width))

    def forward(self) -> torch.Tensor:
        """(2, E) normalised text embeddings of the normal and anomalous states."""
        clip = self.clip[0]
        ids = self.token_ids.to(self.context.device)
        x = clip.token_embedding(ids)
        n = self.n_context
        x = torch.cat([x[:, :1], self.context.to(x.dtype), x[:, 1 + n :]], dim=1)
        x = x + clip.positional_embedding.to(x.dtype)
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
        pooled = text_global_pool(
            x, ids, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None)
        )
        projection = clip.text_projection
        pooled = projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection
        return F.normalize(pooled, dim=-1)


@dataclass
class ClipAdapter:
    """The adapters attached to one detector: their settings and the prompt context."""

    config: ClipAdapterConfig
    prompts: PromptContext


class _AdapterSettings(Protocol):
    """What adapter training reads of a detector's settings (a ``ClipConfig``)."""

    @property
    def logit_scale(self) -> float: ...

    @property
    def image_size(self) -> int | None: ...


class AdaptableClip(Protocol):
    """What the functions here use of a CLIP detector; ``ClipDetector`` matches it.

    A Protocol, not :class:`adcore.detectors.clip.detector.ClipDetector` itself: the detector
    imports this module to save and load its adapters, so this module does not import it back.
    """

    adapter: ClipAdapter | None
    model: ClipAnomalyModel
    tokenizer: Any
    device: torch.device
    threshold: float | None
    training_hash: str | None
    training_digests: list[str]

    @property
    def config(self) -> _AdapterSettings:
        """The detector's settings (``logit_scale``, ``image_size``)."""


def attach_adapters(detector: AdaptableClip, config: ClipAdapterConfig) -> ClipAdapter:
    """Inject LoRA layers into the detector's CLIP and add learnable prompts (in place).

    Every CLIP weight stays frozen; only LoRA matrices and the context require gradients.
    """
    if detector.adapter is not None:
        raise ValueError("This detector already has adapters")
    clip = detector.model.clip
    torch.manual_seed(config.seed)
    pattern = "|".join(_TOWER_PATTERNS[t] for t in config.towers)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=0.0,
        target_modules=rf"^(?:{pattern})$",
    )
    inject_adapter_in_model(lora, clip)
    prompts = PromptContext(clip, detector.tokenizer, config.n_context).to(detector.device)
    detector.adapter = ClipAdapter(config, prompts)
    return detector.adapter


def _attention_adapters(detector: AdaptableClip) -> list[LoraMultiheadAttention]:
    return [m for m in detector.model.clip.modules() if isinstance(m, LoraMultiheadAttention)]


def merge_adapters(detector: AdaptableClip) -> None:
    """Fold the LoRA updates into the attention weights, for scoring.

    peft's LoRA for ``nn.MultiheadAttention`` otherwise merges and unmerges on every forward
    pass, which costs time and lets rounding creep into the frozen weights.
    """
    for layer in _attention_adapters(detector):
        if not layer.merged:
            layer.merge()


def unmerge_adapters(detector: AdaptableClip) -> None:
    """Take the LoRA updates back out of the attention weights (before training)."""
    for layer in _attention_adapters(detector):
        if layer.merged:
            layer.unmerge()


def trainable_parameters(detector: AdaptableClip) -> dict[str, nn.Parameter]:
    """Name -> parameter of everything adapter training changes (LoRA matrices + context)."""
    if detector.adapter is None:
        return {}
    params = {n: p for n, p in detector.model.clip.named_parameters() if "lora_" in n}
    params["context"] = detector.adapter.prompts.context
    return params


def adapter_state(detector: AdaptableClip) -> dict[str, torch.Tensor]:
    """The adapter tensors to save, under ``adapter.<name>``."""
    return {ADAPTER_PREFIX + n: p.detach() for n, p in trainable_parameters(detector).items()}


def load_adapter_state(detector: AdaptableClip, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved adapter tensors into attached adapters.

    Raises:
        ModelFileError: If names or shapes do not match the attached adapters.
    """
    params = trainable_parameters(detector)
    saved = {
        n[len(ADAPTER_PREFIX) :]: t for n, t in tensors.items() if n.startswith(ADAPTER_PREFIX)
    }
    if set(saved) != set(params):
        raise ModelFileError("The saved adapter tensors do not match the adapter settings")
    with torch.no_grad():
        for name, param in params.items():
            if saved[name].shape != param.shape:
                raise ModelFileError(f"Adapter tensor {name} has shape {tuple(saved[name].shape)}")
            param.copy_(saved[name].to(param.device))


def _labelled(
    sources: Sequence[ImageSource], labels: Sequence[int]
) -> tuple[list[np.ndarray], np.ndarray, list[tuple[str, str]]]:
    if len(sources) != len(labels):
        raise ValueError(f"{len(sources)} images but {len(labels)} labels")
    pixels, kept, skipped = [], [], []
    for source, label in zip(sources, labels, strict=True):
        loaded, failures = load_many([source])
        skipped += failures
        if loaded:
            pixels.append(loaded[0].pixels)
            kept.append(int(label))
    y = np.asarray(kept, dtype=np.int64)
    if not set(np.unique(y)) >= {0, 1} or not set(np.unique(y)) <= {0, 1}:
        raise DatasetError("Adapter training needs good (0) and defective (1) labelled parts")
    return pixels, y, skipped


def _loss(detector: AdaptableClip, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    states = detector.adapter.prompts()
    features = detector.model.image_embedding(x)
    logits = detector.config.logit_scale * features @ states.T
    return F.cross_entropy(logits, y)


def train_adapters(
    detector: AdaptableClip,
    sources: Sequence[ImageSource],
    labels: Sequence[int],
    config: ClipAdapterConfig | None = None,
    progress: Progress | None = None,
) -> AdapterReport:
    """Attach (if needed) and train adapters on labelled parts with an image-level loss.

    The detector then scores with the adapted towers and the learned state embeddings. Few-shot
    references embedded before training are dropped (they came from the unadapted tower), and
    so is the threshold: call :meth:`~adcore.detectors.clip.detector.ClipDetector.fit` again
    to re-embed references.

    Args:
        detector: A CLIP detector.
        sources: Labelled parts (paths, bytes or arrays); unreadable ones are skipped.
        labels: 0 = good, 1 = defect, one per source.
        config: Adapter settings (the attached adapters' settings when already attached).
        progress: Optional callback ``progress(fraction, message)``.

    Returns:
        An :class:`AdapterReport` with the loss before training and after every epoch.
    """
    start = time.perf_counter()
    tell = report(progress)
    pixels, y, skipped = _labelled(sources, labels)
    if detector.adapter is None:
        attach_adapters(detector, config or ClipAdapterConfig())
    unmerge_adapters(detector)
    settings = detector.adapter.config
    params = trainable_parameters(detector)
    clip = detector.model.clip
    # peft merges/unmerges MHA adapters on each training forward: keep the exact frozen weights
    frozen = {
        n: p.detach().clone()
        for n, p in clip.named_parameters()
        if ".attn." in n and "lora_" not in n
    }
    x_all = to_tensor_batch(pixels, detector.config.image_size)
    y_all = torch.from_numpy(y)
    optimiser = torch.optim.AdamW(params.values(), lr=settings.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed)

    def mean_loss() -> float:
        with torch.no_grad():
            total = sum(
                float(_loss(detector, xb.to(detector.device), yb.to(detector.device))) * len(yb)
                for xb, yb in zip(
                    x_all.split(settings.batch_size), y_all.split(settings.batch_size), strict=True
                )
            )
        return total / len(y_all)

    losses = [mean_loss()]
    for epoch in range(settings.epochs):
        order = torch.randperm(len(y_all), generator=generator)
        for batch in order.split(settings.batch_size):
            loss = _loss(
                detector, x_all[batch].to(detector.device), y_all[batch].to(detector.device)
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        losses.append(mean_loss())
        tell(
            (epoch + 1) / settings.epochs, f"Epoch {epoch + 1}/{settings.epochs}: {losses[-1]:.4f}"
        )
    with torch.no_grad():
        for name, param in clip.named_parameters():
            if name in frozen:
                param.copy_(frozen[name])
        merge_adapters(detector)
        detector.model.text_embeddings = detector.adapter.prompts().detach()
        for key in detector.model.scales:
            detector.model.set_memory(key, torch.empty(0, detector.model.embed_dim))
    detector.training_digests, detector.training_hash, detector.threshold = [], None, None
    return AdapterReport(
        n_images=len(y),
        seconds=time.perf_counter() - start,
        losses=losses,
        trainable_parameters=int(sum(p.numel() for p in params.values())),
        skipped=tuple(skipped),
    )

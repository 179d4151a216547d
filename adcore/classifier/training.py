"""The training loop: AdamW, balanced batches, early stopping on the FNR-first operating point.

Every epoch ends with a validation pass. At the threshold the FNR-first rule
(:func:`adcore.thresholds.select_threshold`) would pick on the validation probabilities, the
validation FNR is at most ``target_fnr``; epochs are compared by (FNR above the target, FPR at
that threshold, validation loss), lower is better. The best epoch's weights are restored at
the end, so the returned model is the one whose threshold is then chosen on the same set.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from adcore.classifier.config import ClassifierConfig
from adcore.classifier.data import LabelledTensors, augment, epoch_order
from adcore.classifier.torch_model import ClassifierModel
from adcore.detectors.base import Progress, report
from adcore.errors import JobCancelled
from adcore.thresholds import select_threshold

ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class EpochRecord:
    """Validation results of one epoch.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: Mean training loss (defect + weighted type loss).
        validation_loss: Mean unweighted binary cross-entropy on the validation set.
        fnr: Validation FNR at the FNR-first threshold of this epoch.
        fpr: Validation FPR at that threshold.
        threshold: That threshold (a probability).
        seconds: Wall time of the epoch, validation included.
    """

    epoch: int
    train_loss: float
    validation_loss: float
    fnr: float
    fpr: float
    threshold: float
    seconds: float

    def key(self, target_fnr: float) -> tuple[float, float, float]:
        """Sort key, lower is better: (FNR above target, FPR, validation loss)."""
        return (max(0.0, self.fnr - target_fnr), self.fpr, self.validation_loss)


@dataclass(frozen=True)
class TrainingOutcome:
    """What :func:`train_model` did.

    Attributes:
        history: One record per epoch run.
        best_epoch: 1-based epoch whose weights the model now holds.
        stop_reason: ``"patience"``, ``"max_epochs"`` or ``"time_budget"``.
        validation_probabilities: (N_val,) float64 p(defect) of the restored model.
        seconds: Wall time of the loop.
    """

    history: tuple[EpochRecord, ...]
    best_epoch: int
    stop_reason: str
    validation_probabilities: np.ndarray
    seconds: float


def _check_stop(should_stop: ShouldStop | None, where: str) -> None:
    if should_stop is not None and should_stop():
        raise JobCancelled(f"Training cancelled {where}")


def _type_weights(data: LabelledTensors, n_types: int) -> torch.Tensor | None:
    """Inverse-frequency weights of the defect types (mean 1), None without a type head."""
    if n_types < 2:
        return None
    types = data.type_index[data.type_index >= 0]
    counts = torch.bincount(types, minlength=n_types).float().clamp_min(1.0)
    weights = counts.sum() / (n_types * counts)
    return weights / weights.mean()


def _batch_loss(
    model: ClassifierModel,
    x: torch.Tensor,
    is_defect: torch.Tensor,
    type_index: torch.Tensor,
    pos_weight: torch.Tensor | None,
    type_weights: torch.Tensor | None,
    type_loss_weight: float,
) -> torch.Tensor:
    """Binary cross-entropy on p(defect) plus the weighted type cross-entropy on defects."""
    defect_logit, type_logits = model(x)
    loss = F.binary_cross_entropy_with_logits(
        defect_logit.float(), is_defect, pos_weight=pos_weight
    )
    typed = type_index >= 0
    if type_logits is not None and bool(typed.any()):
        loss = loss + type_loss_weight * F.cross_entropy(
            type_logits[typed].float(), type_index[typed], weight=type_weights
        )
    return loss


def predict_logits(
    model: ClassifierModel,
    pixels: torch.Tensor,
    batch_size: int,
    device: torch.device,
    should_stop: ShouldStop | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Evaluate the model on stored images.

    Args:
        model: The network (put in eval mode here).
        pixels: (N, 3, S, S) uint8 RGB.
        batch_size: Images per forward pass.
        device: Where to run.
        should_stop: Checked between batches.

    Returns:
        ((N,) float32 defect logits, (N, T) type logits or None), on the CPU.
    """
    model.eval()
    logits: list[torch.Tensor] = []
    types: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, pixels.shape[0], batch_size):
            _check_stop(should_stop, "while scoring")
            x = pixels[start : start + batch_size].to(device).float().div_(255.0)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                defect_logit, type_logits = model(x)
            logits.append(defect_logit.float().cpu())
            if type_logits is not None:
                types.append(type_logits.float().cpu())
    return torch.cat(logits), (torch.cat(types) if types else None)


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """p(defect) in float64 (so well-separated parts do not all round to exactly 0 or 1)."""
    return torch.sigmoid(logits.double()).numpy()


def train_model(
    model: ClassifierModel,
    train: LabelledTensors,
    validation: LabelledTensors,
    config: ClassifierConfig,
    device: torch.device,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> TrainingOutcome:
    """Fine-tune ``model`` in place and restore its best epoch.

    Args:
        model: The network, already on ``device``.
        train: Training images and labels.
        validation: Held-out images and labels (both classes present).
        config: Hyper-parameters.
        device: CUDA (mixed precision) or CPU.
        progress: ``progress(fraction, message)``.
        should_stop: Checked between batches; True raises :class:`JobCancelled`.

    Returns:
        The history, best epoch and the restored model's validation probabilities.
    """
    start_time = time.perf_counter()
    tell = report(progress)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, config.max_epochs * steps_per_epoch)
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    n_defect = float(train.is_defect.sum())
    pos_weight = None
    if config.balance == "class_weights":
        pos_weight = torch.tensor((len(train) - n_defect) / max(n_defect, 1.0), device=device)
    type_weights = _type_weights(train, model.n_types)
    if type_weights is not None:
        type_weights = type_weights.to(device)
    val_targets = validation.is_defect.numpy().astype(np.int64)

    history: list[EpochRecord] = []
    best_key: tuple[float, float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, stale, stop_reason = 0, 0, "max_epochs"
    for epoch in range(1, config.max_epochs + 1):
        elapsed = time.perf_counter() - start_time
        budget = config.max_train_seconds
        if budget is not None and history and elapsed + history[-1].seconds > budget:
            stop_reason = "time_budget"
            break
        epoch_start = time.perf_counter()
        model.train()
        order = epoch_order(train.is_defect, config.balance, generator)
        total, seen = 0.0, 0
        for step, begin in enumerate(range(0, len(order), config.batch_size)):
            _check_stop(should_stop, f"during epoch {epoch}")
            rows = order[begin : begin + config.batch_size]
            if rows.numel() < 2:  # batch-norm cannot train on a single image
                continue
            x = train.pixels[rows].to(device).float().div_(255.0)
            x = augment(x, config.max_rotation_degrees, config.flips, generator)
            with torch.autocast(device.type, enabled=use_amp):
                loss = _batch_loss(
                    model,
                    x,
                    train.is_defect[rows].to(device),
                    train.type_index[rows].to(device),
                    pos_weight,
                    type_weights,
                    config.type_loss_weight,
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += float(loss.detach()) * rows.numel()
            seen += rows.numel()
            fraction = (epoch - 1 + (step + 1) / steps_per_epoch) / config.max_epochs
            tell(fraction, f"Epoch {epoch}/{config.max_epochs}: batch {step + 1}/{steps_per_epoch}")

        logits, _ = predict_logits(model, validation.pixels, config.batch_size, device, should_stop)
        val_loss = float(F.binary_cross_entropy_with_logits(logits, validation.is_defect))
        choice = select_threshold(probabilities(logits), val_targets, target_fnr=config.target_fnr)
        record = EpochRecord(
            epoch=epoch,
            train_loss=total / max(seen, 1),
            validation_loss=val_loss,
            fnr=float(choice.fnr if choice.fnr is not None else math.nan),
            fpr=float(choice.fpr if choice.fpr is not None else math.nan),
            threshold=float(choice.value),
            seconds=time.perf_counter() - epoch_start,
        )
        history.append(record)
        key = record.key(config.target_fnr)
        if best_key is None or key < best_key:
            best_key, best_epoch, stale = key, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        tell(
            epoch / config.max_epochs,
            f"Epoch {epoch}: validation FNR {record.fnr:.3f}, FPR {record.fpr:.3f}, "
            f"loss {val_loss:.4f} (best epoch {best_epoch})",
        )
        if stale >= config.patience:
            stop_reason = "patience"
            break

    assert best_state is not None
    model.load_state_dict(best_state)
    logits, _ = predict_logits(model, validation.pixels, config.batch_size, device, should_stop)
    return TrainingOutcome(
        history=tuple(history),
        best_epoch=best_epoch,
        stop_reason=stop_reason,
        validation_probabilities=probabilities(logits),
        seconds=time.perf_counter() - start_time,
    )

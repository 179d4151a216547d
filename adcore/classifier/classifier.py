"""The supervised classifier wrapper: train, predict, save and load around :class:`ClassifierModel`.

Typical use by a job runner::

    classifier, report = train_classifier(samples, ClassifierConfig(), progress=cb,
                                          should_stop=job.is_cancelled)
    classifier.save(model_dir)
    ...
    classifier = Classifier.load(model_dir)
    predictions = classifier.predict([pixels])
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from adcore.classifier.config import GENERIC_DEFECT_TYPE, ClassifierConfig, LabelledImage
from adcore.classifier.data import prepare_tensors, stratified_split, type_vocabulary
from adcore.classifier.results import ClassifierPrediction, ClassifierReport
from adcore.classifier.torch_model import ClassifierModel
from adcore.classifier.training import probabilities, train_model
from adcore.detectors.base import (
    ImageSource,
    LoadedImage,
    Progress,
    default_device,
    load_many,
    refused_reason,
    report,
    restore_fitted_identity,
    save_fitted,
    scaled_progress,
    to_tensor_batch,
    training_set_hash,
)
from adcore.errors import DatasetError, ModelFileError
from adcore.metrics import rates_at_threshold
from adcore.persistence import load_model
from adcore.thresholds import select_threshold


class Classifier:
    """A fine-tuned good/defect (and defect-type) classifier.

    Args:
        config: Hyper-parameters.
        defect_types: The defect types the type head distinguishes (sorted; a single entry or
            none means no type head).
        device: Torch device; CUDA when available by default.
        pretrained: Start from ImageNet weights (False in tests and when loading).
    """

    kind = "classifier"

    def __init__(
        self,
        config: ClassifierConfig | None = None,
        *,
        defect_types: Sequence[str] = (GENERIC_DEFECT_TYPE,),
        device: str | torch.device | None = None,
        pretrained: bool = True,
    ) -> None:
        self.config = config or ClassifierConfig()
        self.defect_types = tuple(defect_types) or (GENERIC_DEFECT_TYPE,)
        self.device = torch.device(device) if device else default_device()
        self.model = ClassifierModel(
            self.config.backbone,
            len(self.defect_types),
            pretrained=pretrained,
            dropout=self.config.dropout,
            frozen_stages=self.config.frozen_stages,
        ).to(self.device)
        self.model.eval()
        self.threshold: float | None = None
        self.training_hash: str | None = None
        self.training_digests: list[str] = []

    # ------------------------------------------------------------------ predict
    def predict_proba(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw probabilities.

        Args:
            images: (H, W, 3) uint8 RGB arrays of any sizes.

        Returns:
            ((N,) float64 p(defect), (N, T) float64 type probabilities given a defect, or None
            without a type head).
        """
        self.model.eval()
        defect: list[np.ndarray] = []
        types: list[np.ndarray] = []
        bs = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(images), bs):
                x = to_tensor_batch(images[start : start + bs], self.config.image_size)
                defect_logit, type_logits = self.model(x.to(self.device))
                defect.append(probabilities(defect_logit.float().cpu()))
                if type_logits is not None:
                    types.append(torch.softmax(type_logits.double().cpu(), dim=1).numpy())
        if not defect:
            return np.zeros(0), None
        return np.concatenate(defect), (np.concatenate(types) if types else None)

    def predict(
        self, images: Sequence[np.ndarray], progress: Progress | None = None
    ) -> list[ClassifierPrediction]:
        """Classify decoded images (use :func:`load_many` or :meth:`predict_files` for files).

        Args:
            images: (H, W, 3) uint8 RGB arrays.
            progress: Optional ``progress(fraction, message)``.

        Returns:
            One :class:`ClassifierPrediction` per image.
        """
        tell = report(progress)
        out: list[ClassifierPrediction] = []
        bs = self.config.batch_size
        for start in range(0, len(images), bs):
            p_defect, p_types = self.predict_proba(images[start : start + bs])
            for i, p in enumerate(p_defect):
                if p_types is None:
                    name, p_type = self.defect_types[0], 1.0
                else:
                    best = int(np.argmax(p_types[i]))
                    name, p_type = self.defect_types[best], float(p_types[i, best])
                out.append(ClassifierPrediction(float(p), self.threshold, name, p_type))
            done = min(start + bs, len(images))
            tell(done / len(images), f"Classified {done}/{len(images)} images")
        return out

    def predict_files(
        self, sources: Sequence[ImageSource]
    ) -> tuple[list[tuple[LoadedImage, ClassifierPrediction]], list[tuple[str, str]]]:
        """Load and classify, reporting bad files instead of failing.

        Returns:
            ((image, prediction) per loaded image; (name, reason) per refused one).
        """
        loaded, failures = load_many(sources)
        preds = self.predict([im.pixels for im in loaded]) if loaded else []
        return list(zip(loaded, preds, strict=True)), failures

    def with_threshold(self, threshold: float | None) -> Classifier:
        """Set the probability threshold and return self."""
        self.threshold = None if threshold is None else float(threshold)
        return self

    # ------------------------------------------------------------------ persistence
    def save(
        self,
        directory: str | os.PathLike,
        *,
        extra: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write ``model.safetensors`` + ``config.json`` (see :mod:`adcore.persistence`)."""
        if self.threshold is None:
            raise ModelFileError("Refusing to save an untrained classifier (no threshold)")
        save_fitted(
            self,
            directory,
            config=asdict(self.config),
            tensors=dict(self.model.state_dict()),
            facts={"backbone": self.config.backbone, "defect_types": list(self.defect_types)},
            extra=extra,
            overwrite=overwrite,
        )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        device: str | None = None,
        expected_training_hash: str | None = None,
    ) -> Classifier:
        """Rebuild a saved classifier (no ImageNet weights needed), refusing what does not verify.

        Raises:
            ModelFileError: Missing/pickled/tampered files, or tensors that do not fit.
        """
        saved = load_model(directory, kind=cls.kind, expected_training_hash=expected_training_hash)
        try:
            config = ClassifierConfig.from_dict(saved.config)
            types = [str(t) for t in saved.document.get("defect_types") or []]
            classifier = cls(config, defect_types=types, device=device, pretrained=False)
            classifier.model.load_state_dict(saved.tensors, strict=True)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ModelFileError(f"{directory}: does not describe a classifier: {err}") from err
        restore_fitted_identity(classifier, saved.document, directory)
        classifier.model.to(classifier.device).eval()
        return classifier


def train_classifier(
    samples: Sequence[LabelledImage],
    config: ClassifierConfig | None = None,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device | None = None,
    pretrained: bool = True,
) -> tuple[Classifier, ClassifierReport]:
    """Fine-tune a classifier on reviewed images and choose its threshold.

    Steps: decode and resize every image once (unreadable ones are skipped with a reason);
    split stratified by class into train/validation; fine-tune with AdamW on balanced,
    flip/rotate-augmented batches; stop early on the validation FNR-first operating point;
    choose the probability threshold with :func:`adcore.thresholds.select_threshold` on the
    validation probabilities.

    Args:
        samples: Labelled images (both classes, at least two of each).
        config: Hyper-parameters (defaults: EfficientNet-Lite0 at 160 px).
        progress: ``progress(fraction, message)``.
        should_stop: Checked between batches; True raises
            :class:`~adcore.errors.JobCancelled`.
        device: Torch device; CUDA (mixed precision) when available by default.
        pretrained: Start from ImageNet weights (False only in tests).

    Returns:
        The trained classifier (threshold set) and its report.

    Raises:
        DatasetError: Too few usable labelled images of a class.
        JobCancelled: ``should_stop()`` returned True.
        WeightsNotFoundError: The backbone's ImageNet weights are not available.
    """
    started = time.perf_counter()
    config = config or ClassifierConfig()
    tell = report(progress)
    vocabulary = type_vocabulary(samples, config.min_examples_per_type)
    tell(0.0, f"Loading {len(samples)} images")
    data, skipped = prepare_tensors(samples, vocabulary, config.image_size, should_stop=should_stop)
    keys = data.class_keys(vocabulary)
    try:
        train_rows, val_rows = stratified_split(keys, config.validation_fraction, config.seed)
    except DatasetError as err:
        raise DatasetError(str(err) + refused_reason(skipped)) from err
    train, validation = data.subset(train_rows), data.subset(val_rows)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        classifier = Classifier(
            config, defect_types=vocabulary, device=device, pretrained=pretrained
        )
        tell(0.05, f"Training on {len(train)} images, validating on {len(validation)}")
        outcome = train_model(
            classifier.model,
            train,
            validation,
            config,
            classifier.device,
            progress=scaled_progress(tell, 0.05, 0.98),
            should_stop=should_stop,
        )
    val_labels = validation.is_defect.numpy().astype(np.int64)
    scores = outcome.validation_probabilities
    choice = select_threshold(scores, val_labels, target_fnr=config.target_fnr)
    rates = rates_at_threshold(val_labels, scores, choice.value)
    classifier.threshold = float(choice.value)
    classifier.training_digests = list(data.digests)
    classifier.training_hash = training_set_hash(classifier.training_digests)
    result = ClassifierReport(
        validation_fnr=float(rates.fnr),
        validation_fpr=float(rates.fpr),
        validation_accuracy=float((rates.tp + rates.tn) / len(val_labels)),
        validation_auroc=float(roc_auc_score(val_labels, scores)),
        threshold=float(choice.value),
        target_fnr=config.target_fnr,
        epochs_run=len(outcome.history),
        best_epoch=outcome.best_epoch,
        stop_reason=outcome.stop_reason,
        class_counts={
            "train": dict(Counter(keys[i] for i in train_rows)),
            "validation": dict(Counter(keys[i] for i in val_rows)),
        },
        defect_types=vocabulary,
        n_train=len(train),
        n_validation=len(validation),
        seconds=time.perf_counter() - started,
        device=str(classifier.device),
        history=outcome.history,
        validation_names=validation.names,
        skipped=tuple(skipped),
    )
    tell(1.0, f"Trained: validation FNR {rates.fnr:.3f}, FPR {rates.fpr:.3f}")
    return classifier, result

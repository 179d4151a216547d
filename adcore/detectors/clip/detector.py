"""CLIP detector: zero-shot WinCLIP, few-shot WinCLIP+, save/load by reference to the weights.

A saved CLIP detector does not copy the CLIP weights. ``config.json`` names the architecture,
the pretrained tag or checkpoint path and the checkpoint's sha256; ``model.safetensors`` holds
only the text embeddings of the prompt ensemble and the few-shot memories. Loading re-loads the
CLIP weights from the same source and refuses them if their sha256 changed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from adcore.detectors.base import (
    BatchDetector,
    FitReport,
    ImageSource,
    Progress,
    default_device,
    known_fields,
    load_and_build,
    load_many,
    refused_reason,
    report,
    restore_fitted_identity,
    save_fitted,
    split_calibration,
    training_set_hash,
)
from adcore.detectors.clip.prompts import clean_object_name, prompt_ensemble
from adcore.detectors.clip.torch_model import ClipAnomalyModel
from adcore.detectors.clip.weights import checkpoint_sha256, load_clip
from adcore.errors import DatasetError, ModelFileError

DEFAULT_CLIP_MODEL = "ViT-B-16-plus-240"
DEFAULT_CLIP_PRETRAINED = "laion400m_e32"


@dataclass(frozen=True)
class ClipConfig:
    """Hyper-parameters of a CLIP detector.

    Attributes:
        model_name: open_clip architecture (WinCLIP used ``ViT-B-16-plus-240``).
        pretrained: open_clip pretrained tag already in the local cache, or a checkpoint path.
        object_name: The project's object for the prompts (``"object"`` when empty).
        window_sizes: Window sides in patches for the zero-shot map and the few-shot memory.
        window_stride: Step between windows (WinCLIP: 1; 2 is about 4 times cheaper on CPU).
        image_size: Side of the anomaly map (and of the resized input); None = CLIP's input.
        logit_scale: Softmax temperature of the normal/anomalous decision.
        blur_sigma: Anomaly-map smoothing, in map pixels.
        batch_size: Images per forward pass.
        shots: At most this many good images become few-shot references (0: zero-shot;
            None: every image given to :meth:`ClipDetector.fit`).
        calibration_fraction: Share of the given good images held out to set the first
            threshold (they join the references afterwards).
        good_quantile: Quantile of held-out good scores used as the first threshold.
        seed: Random seed (which images become the shots).
        cache_dir: Extra folder to look for cached pretrained tags in.
    """

    model_name: str = DEFAULT_CLIP_MODEL
    pretrained: str = DEFAULT_CLIP_PRETRAINED
    object_name: str = "object"
    window_sizes: tuple[int, ...] = (2, 3)
    window_stride: int = 1
    image_size: int | None = None
    logit_scale: float = 100.0
    blur_sigma: float = 4.0
    batch_size: int = 8
    shots: int | None = None
    calibration_fraction: float = 0.1
    good_quantile: float = 0.99
    seed: int = 0
    cache_dir: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipConfig:
        """The config saved in a model file; unknown keys are ignored.

        Raises:
            ValueError: On a negative ``shots`` or an unusable ``object_name``.
        """
        known = known_fields(cls, data)
        if "window_sizes" in known:
            known["window_sizes"] = tuple(int(k) for k in known["window_sizes"])
        if "pretrained" in known and known["pretrained"] is not None:
            known["pretrained"] = str(known["pretrained"])
        config = cls(**known)
        if config.shots is not None and config.shots < 0:
            raise ValueError("shots must be 0 (zero-shot) or more")
        clean_object_name(config.object_name)
        return config


class ClipDetector(BatchDetector):
    """A zero-/few-shot detector from a frozen CLIP model (WinCLIP / WinCLIP+).

    Args:
        config: Hyper-parameters, including where the CLIP weights are.
        device: Torch device; CUDA when available by default.

    Raises:
        WeightsNotFoundError: The CLIP weights are not available locally.
    """

    kind = "clip"

    def __init__(self, config: ClipConfig | None = None, *, device: str | None = None) -> None:
        config = config or ClipConfig()
        self.device = torch.device(device) if device else default_device()
        clip, tokenizer, weights = load_clip(
            config.model_name, config.pretrained, device=self.device, cache_dir=config.cache_dir
        )
        self.weights = weights
        self.tokenizer = tokenizer
        self.adapter: Any = None  # a lora.ClipAdapter once adapters are attached
        self.weights_sha256 = checkpoint_sha256(weights.checkpoint)
        preprocess = getattr(clip.visual, "preprocess_cfg", {}) or {}
        extra = {k: tuple(preprocess[k]) for k in ("mean", "std") if k in preprocess}
        self.model = (
            ClipAnomalyModel(
                clip,
                window_sizes=config.window_sizes,
                window_stride=config.window_stride,
                logit_scale=config.logit_scale,
                blur_sigma=config.blur_sigma,
                **extra,
            )
            .to(self.device)
            .eval()
        )
        if config.image_size is None:
            config = replace(config, image_size=self.model.native_size[0])
        self.config = config
        normal, anomalous = prompt_ensemble(config.object_name)
        with torch.inference_mode():
            self.model.text_embeddings = self.model.encode_states(
                tokenizer(normal), tokenizer(anomalous)
            )
        self.threshold: float | None = None
        self.training_hash: str | None = None
        self.training_digests: list[str] = []

    # ------------------------------------------------------------------ fit
    def _pick_shots(self, sources: Sequence[ImageSource]) -> list[ImageSource]:
        shots = self.config.shots
        if shots is None or shots >= len(sources):
            return list(sources)
        order = np.random.default_rng(self.config.seed).permutation(len(sources))
        return [sources[i] for i in sorted(order[:shots])]

    def _add(self, images: Sequence[np.ndarray], progress: Progress | None = None) -> int:
        tell = report(progress)
        added = 0
        with torch.inference_mode():
            for x, done in self._input_batches(images):
                added += self.model.add_references(x)
                tell(done / len(images), f"Embedding references {done}/{len(images)}")
        return added

    def fit(self, sources: Sequence[ImageSource], progress: Progress | None = None) -> FitReport:
        """Keep up to ``shots`` good images as references; none at all means zero-shot.

        Args:
            sources: Good images (paths, bytes or arrays); may be empty. Bad files are skipped.
            progress: Optional callback ``progress(fraction, message)``.

        Returns:
            A :class:`FitReport`; ``details`` has the mode, shots and memory size.

        Raises:
            DatasetError: Images were given but none could be read.
        """
        start = time.perf_counter()
        tell = report(progress)
        for key in self.model.scales:
            self.model.set_memory(key, torch.empty(0, self.model.embed_dim))
        self.threshold = self.calibrated_threshold = None
        loaded, skipped = load_many(self._pick_shots(sources))
        if sources and not loaded and self.config.shots != 0:
            raise DatasetError("No usable good image to fit on" + refused_reason(skipped))
        calibration, references = split_calibration(
            loaded, self.config.calibration_fraction, self.config.seed
        )
        self._add([im.pixels for im in references], lambda f, m: tell(0.8 * f, m))
        self.training_digests = [im.sha256 for im in references]
        details: dict[str, Any] = {}
        if calibration:
            self._calibrate(calibration, details, tell, at=0.85)
        self.training_hash = training_set_hash(self.training_digests)
        details.update(
            mode="few-shot" if self.training_digests else "zero-shot",
            shots=len(self.training_digests),
            memory_size=self.model.memory_size,
            memory_bank_size=self.model.memory_size,
            clip_model=self.config.model_name,
            threshold=self.threshold,
        )
        tell(1.0, "Fit done")
        return FitReport(len(loaded), time.perf_counter() - start, details, tuple(skipped))

    def update(
        self, sources: Sequence[ImageSource], *, digests: Sequence[str] | None = None
    ) -> int:
        """Add confirmed-good images to the few-shot references without a refit.

        Returns:
            The number of embeddings added to the memories.
        """
        loaded, skipped = load_many(sources)
        if not loaded:
            raise DatasetError("No usable image to add" + refused_reason(skipped))
        added = self._add([im.pixels for im in loaded])
        self._add_training_digests(loaded, digests)
        return added

    # ------------------------------------------------------------------ predict
    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x)

    def _score_and_embed_batch(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.model.score_and_embed(x)

    # ------------------------------------------------------------------ persistence
    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"text_embeddings": self.model.text_embeddings}
        tensors.update({f"memory_{k}": self.model.memory(k) for k in self.model.scales})
        if self.adapter is not None:
            from adcore.detectors.clip.lora import adapter_state

            tensors.update(adapter_state(self))
        return tensors

    def save(
        self,
        directory: str | os.PathLike,
        *,
        extra: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write ``model.safetensors`` (text embeddings + memories) and ``config.json``.

        The CLIP weights are not copied: ``config.json`` keeps their source and sha256.
        """
        config = asdict(self.config)
        config["window_sizes"] = list(self.config.window_sizes)
        save_fitted(
            self,
            directory,
            config=config,
            tensors=self._tensors(),
            facts={
                "backbone": f"clip:{self.config.model_name}",
                "clip_weights": {
                    "model_name": self.config.model_name,
                    "pretrained": self.config.pretrained,
                    "checkpoint": str(self.weights.checkpoint),
                    "sha256": self.weights_sha256,
                },
                "adapter": None if self.adapter is None else asdict(self.adapter.config),
            },
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
    ) -> ClipDetector:
        """Rebuild a saved detector, re-loading CLIP from the saved source.

        Raises:
            ModelFileError: The files do not verify, or the CLIP weights changed.
            WeightsNotFoundError: The CLIP weights are no longer available.
        """
        saved, detector = load_and_build(
            directory,
            cls.kind,
            expected_training_hash,
            lambda config: cls(ClipConfig.from_dict(config), device=device),
        )
        recorded = (saved.document.get("clip_weights") or {}).get("sha256")
        if recorded != detector.weights_sha256:
            raise ModelFileError(
                f"{directory}: the CLIP weights at {detector.weights.checkpoint} are not the ones "
                "this model was saved with (sha256 differs): refused"
            )
        tensors = dict(saved.tensors)
        if saved.document.get("adapter"):
            from adcore.detectors.clip.lora import (
                ADAPTER_PREFIX,
                ClipAdapterConfig,
                attach_adapters,
                load_adapter_state,
                merge_adapters,
            )

            try:
                adapter_config = ClipAdapterConfig.from_dict(saved.document["adapter"])
            except (TypeError, ValueError) as err:
                raise ModelFileError(f"{directory}: bad adapter settings: {err}") from err
            attach_adapters(detector, adapter_config)
            load_adapter_state(detector, tensors)
            merge_adapters(detector)
            tensors = {k: v for k, v in tensors.items() if not k.startswith(ADAPTER_PREFIX)}
        expected = {"text_embeddings", *(f"memory_{k}" for k in detector.model.scales)}
        if set(tensors) != expected:
            raise ModelFileError(f"{directory}: tensors {sorted(tensors)} do not match")
        dim = detector.model.embed_dim
        for name, tensor in tensors.items():
            if tensor.ndim != 2 or tensor.shape[1] != dim:
                raise ModelFileError(f"{directory}: {name} has shape {tuple(tensor.shape)}")
        restore_fitted_identity(detector, saved.document, directory)
        detector.model.text_embeddings = saved.tensors["text_embeddings"].to(detector.device)
        for key in detector.model.scales:
            detector.model.set_memory(key, saved.tensors[f"memory_{key}"])
        return detector

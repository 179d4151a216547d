"""Optional rephrasing by a local vision-language model that also sees the part and its map.

A :class:`VisionLanguageExplainer` works like
:class:`adcore.explain.language_model.LanguageModelExplainer` (same ``rewrite`` contract: the
text is fact-checked and the grounded text is the fallback, see
:func:`adcore.explain.rewriting.checked_rewrite`), but it sends two images with the prompt:
the part image and its anomaly-map overlay. Supported models:

* **SmolVLM / Idefics3** (``model_type`` ``smolvlm`` or ``idefics3``) and **Qwen2-VL /
  Qwen2.5-VL** (``qwen2_vl``, ``qwen2_5_vl``): loaded with ``AutoProcessor`` and
  ``AutoModelForImageTextToText`` from transformers' own code (no remote code).
* **MiniCPM-V** (``model_type`` ``minicpmv``, 2.6 or later): its modelling code ships with the
  weights, so loading it runs that code (``trust_remote_code=True``). Loupe refuses unless the
  source is opted in, per source: list its folder in the ``LOUPE_TRUST_REMOTE_CODE``
  environment variable (folders separated by ``os.pathsep``) or pass
  ``trust_remote_code=True``. It is queried through its ``chat(image=None, msgs=...,
  tokenizer=...)`` method.

Installing weights offline (nothing is ever downloaded by Loupe)
----------------------------------------------------------------
On a machine with internet access, save the model into one folder and copy that folder to the
Loupe server, e.g. for SmolVLM::

    from transformers import AutoModelForImageTextToText, AutoProcessor
    name = "HuggingFaceTB/SmolVLM-256M-Instruct"      # or "Qwen/Qwen2-VL-2B-Instruct"
    AutoProcessor.from_pretrained(name).save_pretrained("/models/smolvlm")
    AutoModelForImageTextToText.from_pretrained(name).save_pretrained("/models/smolvlm")

For MiniCPM-V, copy the whole hub snapshot (its ``*.py`` files are the model code)::

    huggingface-cli download openbmb/MiniCPM-V-2_6 --local-dir /models/minicpm-v

Alternatively copy a hub snapshot into the Hugging Face cache (``~/.cache/huggingface/hub`` or
``$HF_HOME/hub``) and name the model by its id. Then set the project's language-model source
(Explanations settings) to the folder, e.g. ``/models/smolvlm`` (for MiniCPM-V also start the
server with ``LOUPE_TRUST_REMOTE_CODE=/models/minicpm-v``). The folder's ``config.json`` tells
Loupe it is a vision-language model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from adcore.errors import ExplainerUnavailable
from adcore.explain.facts import ExplanationFacts
from adcore.explain.rewriting import (
    RewriteResult,
    checked_rewrite,
    clean_generation,
    request_text,
)
from adcore.explain.sentences import render
from adcore.explain.vision_language_sources import (
    CHAT_KIND,
    SUPPORTED,
    read_model_config,
    remote_code_refusal,
    vision_language_kind,
)

IMAGE_PREAMBLE = (
    "The first image shows the part; the second shows the same part with its anomaly map "
    "overlaid (warm colours are the most unusual areas). Take every number from the text below."
)
"""Tells the model what the two attached images are."""

MAX_IMAGE_SIDE = 448
"""Longest side, in pixels, of the images sent to the model (larger ones are shrunk, keeping
their aspect ratio), which bounds the number of image tokens and the CPU time."""


class VisionLanguageExplainer:
    """Rephrases grounded explanations with a local vision-language model that sees the part.

    Args:
        model: An image-text-to-text ``transformers`` model (``generate`` is called), or for
            ``uses_chat`` a MiniCPM-V model (``chat`` is called).
        processor: Its processor (tokenizer + image processor with a chat template), or for
            ``uses_chat`` its tokenizer.
        name: A label for logs (e.g. the folder it was loaded from).
        uses_chat: Whether to query ``model.chat`` (MiniCPM-V) instead of ``generate``.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "vision-language model",
        uses_chat: bool = False,
    ) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.uses_chat = uses_chat
        self._lock = threading.Lock()
        if hasattr(model, "eval"):
            model.eval()

    @property
    def tokenizer(self) -> Any:
        """The text tokenizer (the processor's, or the MiniCPM-V tokenizer itself)."""
        return getattr(self.processor, "tokenizer", self.processor)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        *,
        trust_remote_code: bool = False,
        local_files_only: bool = True,
    ) -> VisionLanguageExplainer:
        """Load a supported vision-language model from a local folder (or a cached hub id).

        Args:
            path_or_id: A folder holding ``config.json``, the weights and the processor files,
                or a hub id whose snapshot is already in the local Hugging Face cache.
            trust_remote_code: Allow running the model code shipped with the weights (needed by
                MiniCPM-V; refused otherwise).
            local_files_only: Never download (the default; Loupe runs offline).

        Returns:
            The explainer.

        Raises:
            ExplainerUnavailable: If the folder or its ``config.json`` is missing, the model is
                not a supported vision-language model, remote code is needed but not allowed,
                or loading fails.
        """
        config = read_model_config(path_or_id)
        kind = vision_language_kind(config)
        if kind is None:
            raise ExplainerUnavailable(
                f"{path_or_id!s} is not a supported vision-language model (model_type "
                f"{config.get('model_type')!r}); supported: {SUPPORTED}."
            )
        if kind == CHAT_KIND:
            if not trust_remote_code:
                raise ExplainerUnavailable(remote_code_refusal(path_or_id))
            return cls._load_minicpmv(path_or_id, local_files_only)
        return cls._load_with_processor(path_or_id, local_files_only)

    @classmethod
    def _load_with_processor(
        cls, path_or_id: str | Path, local_files_only: bool
    ) -> VisionLanguageExplainer:
        """SmolVLM / Idefics3 / Qwen2-VL through transformers' own classes (no remote code)."""
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as error:  # pragma: no cover - transformers is a dependency
            raise ExplainerUnavailable(
                f"This transformers has no vision-language auto classes: {error}"
            ) from error
        options = {"local_files_only": local_files_only, "trust_remote_code": False}
        try:
            processor = AutoProcessor.from_pretrained(str(path_or_id), **options)
            model = AutoModelForImageTextToText.from_pretrained(str(path_or_id), **options)
        except Exception as error:  # noqa: BLE001 - loading may fail in many ways; never crash
            raise ExplainerUnavailable(
                f"Could not load a vision-language model from {path_or_id!s}: {error}. The "
                "weights and processor files must be available locally; nothing is downloaded."
            ) from error
        if not getattr(processor, "chat_template", None):
            raise ExplainerUnavailable(
                f"The processor in {path_or_id!s} has no chat template (chat_template.jinja); "
                "save the processor of an instruction-tuned model there."
            )
        return cls(model, processor, name=str(path_or_id))

    @classmethod
    def _load_minicpmv(
        cls, path_or_id: str | Path, local_files_only: bool
    ) -> VisionLanguageExplainer:
        """MiniCPM-V with the code shipped in its folder (the caller has allowed it)."""
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer

            options = {"local_files_only": local_files_only, "trust_remote_code": True}
            tokenizer = AutoTokenizer.from_pretrained(str(path_or_id), **options)
            model = AutoModel.from_pretrained(str(path_or_id), dtype=torch.float32, **options)
        except Exception as error:  # noqa: BLE001 - remote code may raise anything; never crash
            raise ExplainerUnavailable(
                f"Could not load MiniCPM-V from {path_or_id!s}: {error}. Copy the complete "
                "hub snapshot (weights, tokenizer and the *.py model code) into the folder."
            ) from error
        if not callable(getattr(model, "chat", None)):
            raise ExplainerUnavailable(
                f"The model in {path_or_id!s} has no chat() method (MiniCPM-V 2.6 or later "
                "is needed)."
            )
        return cls(model, tokenizer, name=str(path_or_id), uses_chat=True)

    def prompt_for(self, facts: ExplanationFacts) -> str:
        """Refused: explanation adapters are trained on text-only language models.

        Their training prompts (:mod:`adcore.explain.lora_tuning`) are built with this method.

        Raises:
            ExplainerUnavailable: Always.
        """
        raise ExplainerUnavailable(
            f"{self.name} is a vision-language model: explanation adapters are trained on "
            "text-only language models. Choose a text model (e.g. smollm2) to tune one."
        )

    def request(self, facts: ExplanationFacts, *, with_images: bool) -> str:
        """The text sent with the images: instruction, verdict hint, image note, grounded text."""
        preamble = IMAGE_PREAMBLE if with_images else ""
        return request_text(render(facts), facts.verdict, preamble)

    def draft(
        self,
        facts: ExplanationFacts,
        *,
        image: PILImage.Image | None = None,
        overlay: PILImage.Image | None = None,
        max_new_tokens: int = 60,
    ) -> str:
        """The model's own text for ``facts`` (cleaned, *not* fact-checked; may be empty).

        Args:
            facts: Measured facts of one prediction.
            image: The part image (any size; converted to RGB), or None.
            overlay: The same image with its anomaly map blended over it, or None.
            max_new_tokens: Most tokens the model may generate.
        """
        images = [_shrunk(picture) for picture in (image, overlay) if picture is not None]
        request = self.request(facts, with_images=bool(images))
        return clean_generation(self._generate(request, images, max_new_tokens))

    def rewrite(
        self,
        facts: ExplanationFacts,
        *,
        image: PILImage.Image | None = None,
        overlay: PILImage.Image | None = None,
        max_new_tokens: int = 60,
    ) -> RewriteResult:
        """Rephrase the grounded explanation of ``facts`` looking at the part and its map.

        Args:
            facts: Measured facts of one prediction.
            image: The part image, or None (text only).
            overlay: The anomaly-map overlay of the same image, or None.
            max_new_tokens: Most tokens the model may generate.

        Returns:
            A :class:`RewriteResult`; ``text`` always passes the fact-check (the grounded text
            when the model's text does not, which is logged).
        """
        start = time.perf_counter()
        text = self.draft(facts, image=image, overlay=overlay, max_new_tokens=max_new_tokens)
        return checked_rewrite(text, facts, model_name=self.name, started=start)

    def _generate(self, request: str, images: Sequence[PILImage.Image], max_new_tokens: int) -> str:
        """Greedy-decode an answer to ``request`` about ``images``; the new text only."""
        if self.uses_chat:
            return self._generate_with_chat(request, images, max_new_tokens)
        return self._generate_with_processor(request, images, max_new_tokens)

    def _generate_with_processor(
        self, request: str, images: Sequence[PILImage.Image], max_new_tokens: int
    ) -> str:
        """One chat turn through the processor's chat template and ``model.generate``."""
        import torch

        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": request}]
        prompt = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        inputs = self.processor(text=[prompt], images=list(images) or None, return_tensors="pt")
        for target in (getattr(self.model, "device", None), getattr(self.model, "dtype", None)):
            if target is not None and hasattr(inputs, "to"):
                inputs = inputs.to(target)  # a dtype casts floating tensors (pixels) only
        tokenizer = self.tokenizer
        pad_id = getattr(tokenizer, "pad_token_id", None)
        if pad_id is None:
            pad_id = getattr(tokenizer, "eos_token_id", None)
        with self._lock, torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]

    def _generate_with_chat(
        self, request: str, images: Sequence[PILImage.Image], max_new_tokens: int
    ) -> str:
        """One turn of MiniCPM-V's ``chat`` (images first, then the request)."""
        import torch

        messages = [{"role": "user", "content": [*images, request]}]
        with self._lock, torch.inference_mode():
            answer = self.model.chat(
                image=None,
                msgs=messages,
                tokenizer=self.processor,
                sampling=False,
                max_new_tokens=max_new_tokens,
            )
        return answer if isinstance(answer, str) else "".join(answer)


def _shrunk(picture: PILImage.Image) -> PILImage.Image:
    """An RGB copy of ``picture`` whose longest side is at most :data:`MAX_IMAGE_SIDE`."""
    copy = picture.convert("RGB")
    copy.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), PILImage.Resampling.BICUBIC)
    return copy

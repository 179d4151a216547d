"""LoRA tuning of the explanation model on notes: training, saving, loading and evaluation.

A tiny random Llama (built here, nothing downloaded) learns toy notes ("flagged the part" /
"passed the part") from the verdict hint in the explainer's prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from synthetic_parts import FLAGGED_FACTS
from tiny_language_model import (
    TOY_TRAINING,
    build_toy_language_model,
    passed_facts,
    toy_note,
)

from adcore.errors import JobCancelled
from adcore.explain.facts import ExplanationFacts
from adcore.explain.language_model import LanguageModelExplainer, load_language_model
from adcore.explain.lora_tuning import (
    LoraTuningConfig,
    NotePair,
    add_lora,
    evaluate_explainer,
    note_hash,
    note_pairs,
    rouge_l,
    save_adapter,
    split_heldout,
    target_loss,
    train_lora,
    training_examples,
)
from adcore.explain.sentences import render

CONFIG = LoraTuningConfig(**TOY_TRAINING)


def toy_pairs(n: int, start: int = 1) -> list[NotePair]:
    pairs = []
    for note_id in range(start, start + n):
        facts = FLAGGED_FACTS if note_id % 2 else passed_facts()
        pairs.append(NotePair(note_id, facts, toy_note(facts)))
    return pairs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_language_model(tmp_path_factory.mktemp("toy_llm"))


def base_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every non-adapter weight by its name in the plain model (peft's wrapper names undone)."""
    return {
        name.replace(".base_layer", ""): parameter.detach().clone()
        for name, parameter in model.named_parameters()
        if "lora_" not in name
    }


def adapter_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: parameter.detach().clone()
        for name, parameter in model.named_parameters()
        if "lora_" in name
    }


@pytest.fixture(scope="module")
def trained(model_dir: Path) -> dict:
    """The toy notes, the model before training, and after."""
    explainer = load_language_model(str(model_dir))
    before = base_weights(explainer.model)
    examples = training_examples(explainer, toy_pairs(16))
    loss_before = target_loss(explainer, examples)
    untrained = load_language_model(str(model_dir))
    initial_adapters = adapter_weights(add_lora(untrained, CONFIG).get_base_model())
    tuned, report = train_lora(explainer, examples, CONFIG)
    return {
        "tuned": tuned,
        "report": report,
        "examples": examples,
        "base_before": before,
        "loss_before": loss_before,
        "initial_adapters": initial_adapters,
    }


def test_training_changes_only_the_adapter_weights_and_lowers_the_loss(trained: dict) -> None:
    tuned: LanguageModelExplainer = trained["tuned"]
    base = tuned.model.get_base_model()
    after = base_weights(base)
    assert after.keys() == trained["base_before"].keys()
    for name, weight in trained["base_before"].items():
        assert torch.equal(after[name], weight), f"base weight {name} changed"
    adapters = adapter_weights(base)
    assert adapters.keys() == trained["initial_adapters"].keys() and adapters
    assert all(
        not torch.equal(adapters[name], initial)
        for name, initial in trained["initial_adapters"].items()
    )
    assert {name.split(".")[-4] for name in adapters if "lora_A" in name} == {"q_proj", "v_proj"}
    report = trained["report"]
    assert report.trainable_parameters == sum(w.numel() for w in adapters.values())
    assert report.trainable_parameters < report.total_parameters
    assert report.steps == CONFIG.epochs * 4 and report.n_examples == 16
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    assert target_loss(tuned, trained["examples"]) < 0.5 * trained["loss_before"]


def test_the_tuned_model_writes_the_toy_notes_on_held_out_facts(trained: dict) -> None:
    heldout = toy_pairs(4, start=100)
    result = evaluate_explainer(trained["tuned"], heldout, max_new_tokens=6)
    assert [g.text for g in result.generations] == [pair.text for pair in heldout]
    assert result.rouge_l == pytest.approx(1.0)
    assert result.fact_check_pass_rate == 1.0 and result.n == 4


def test_the_adapter_saves_alone_and_loads_with_identical_logits(
    trained: dict, model_dir: Path, tmp_path: Path
) -> None:
    tuned: LanguageModelExplainer = trained["tuned"]
    folder = save_adapter(tuned, tmp_path / "adapter")
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    assert [n for n in names if n.endswith((".safetensors", ".bin"))] == [
        "adapter_model.safetensors"
    ]
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as stored:
        assert all("lora_" in key for key in stored.keys())  # noqa: SIM118 - safe_open API
    with pytest.raises(FileExistsError):
        save_adapter(tuned, folder)

    loaded = load_language_model(str(model_dir), adapter_path=folder)
    ids = tuned.tokenizer(tuned.prompt_for(FLAGGED_FACTS), return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = tuned.model(input_ids=ids).logits
        actual = loaded.model(input_ids=ids).logits
    assert torch.equal(actual, expected)
    assert loaded.draft(FLAGGED_FACTS, max_new_tokens=6) == tuned.draft(
        FLAGGED_FACTS, max_new_tokens=6
    )


def test_an_untrained_model_has_no_adapter_to_save(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="no adapters"):
        save_adapter(load_language_model(str(model_dir)), tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


def test_examples_use_the_inspection_time_prompt(model_dir: Path) -> None:
    explainer = load_language_model(str(model_dir))
    pairs = toy_pairs(2)
    examples = training_examples(explainer, pairs)
    for pair, example in zip(pairs, examples, strict=True):
        assert example.prompt == explainer.prompt(render(pair.facts), pair.facts.verdict)
        assert example.target == pair.text
    assert "Flagged as defective" in examples[0].prompt
    assert "Passed as good" in examples[1].prompt


def test_training_can_be_cancelled(model_dir: Path) -> None:
    explainer = load_language_model(str(model_dir))
    examples = training_examples(explainer, toy_pairs(8))
    steps: list[float] = []
    with pytest.raises(JobCancelled):
        train_lora(
            explainer,
            examples,
            CONFIG,
            progress=lambda fraction, message: steps.append(fraction),
            should_stop=lambda: len(steps) >= 2,
        )
    assert len(steps) == 2


def test_split_is_by_note_id_and_stable_as_notes_are_added() -> None:
    pairs = toy_pairs(200)
    training, heldout = split_heldout(pairs, 0.2)
    assert {p.note_id for p in heldout} == {p.note_id for p in pairs if note_hash(p.note_id) < 0.2}
    assert 20 < len(heldout) < 60 and len(training) + len(heldout) == 200
    _, heldout_reversed = split_heldout(list(reversed(pairs)), 0.2)
    assert {p.note_id for p in heldout_reversed} == {p.note_id for p in heldout}
    _, heldout_more = split_heldout(toy_pairs(300), 0.2)
    assert {p.note_id for p in heldout} <= {p.note_id for p in heldout_more}


def test_a_small_set_still_holds_out_the_lowest_hashes() -> None:
    pairs = toy_pairs(5)
    training, heldout = split_heldout(pairs, 0.01, minimum=3)
    lowest = sorted(pairs, key=lambda p: note_hash(p.note_id))[:3]
    assert {p.note_id for p in heldout} == {p.note_id for p in lowest}
    assert len(training) == 2


def test_rouge_l_on_known_strings() -> None:
    assert rouge_l("Reject: dark crack mark.", "reject dark crack mark") == pytest.approx(1.0)
    assert rouge_l("passed", "reject dark crack mark") == 0.0
    # LCS 3 words; precision 3/3, recall 3/4: F1 = 2 * 1 * 0.75 / 1.75.
    assert rouge_l("reject dark mark", "reject dark crack mark") == pytest.approx(6 / 7)
    assert rouge_l("", "reject") == 0.0


@dataclass
class FixedTexts:
    """Stands in for an explainer: answers each facts' score with a fixed text."""

    texts: dict[float, str]

    def draft(self, facts: ExplanationFacts, *, max_new_tokens: int = 60) -> str:
        """The fixed text for ``facts.score``."""
        return self.texts[facts.score]


def test_evaluation_scores_rouge_and_the_fact_check() -> None:
    passed = passed_facts()
    pairs = [
        NotePair(1, FLAGGED_FACTS, "Reject: dark crack mark. Score 41.2 vs 29.4."),
        NotePair(2, passed, "OK: clean. Score 12.0 vs 29.4."),
    ]
    model = FixedTexts(
        {
            41.2: "Reject: dark crack mark. Score 41.2 vs 29.4.",  # exact and faithful
            12.0: "OK: clean. Score 12.0 vs 30.0.",  # invented threshold
        }
    )
    result = evaluate_explainer(model, pairs)  # type: ignore[arg-type]
    first, second = result.generations
    assert first.rouge_l == pytest.approx(1.0) and first.fact_check_passed
    assert not second.fact_check_passed
    assert any("30.0" in problem for problem in second.problems)
    assert second.rouge_l == pytest.approx(rouge_l(second.text, second.reference))
    assert result.fact_check_pass_rate == 0.5
    assert result.rouge_l == pytest.approx((1.0 + second.rouge_l) / 2)
    assert result.summary()["n"] == 2


def test_notes_with_unreadable_facts_or_no_text_are_set_aside() -> None:
    @dataclass
    class Note:
        note_id: int
        facts: dict
        text: str

    good = FLAGGED_FACTS.to_json()
    pairs, unreadable = note_pairs(
        [Note(1, good, " Reject. "), Note(2, {"verdict": "defect"}, "x"), Note(3, good, "  ")]
    )
    assert [(p.note_id, p.text) for p in pairs] == [(1, "Reject.")]
    assert unreadable == [2, 3]


def test_config_from_job_parameters() -> None:
    config = LoraTuningConfig.from_dict(
        {"rank": "4", "epochs": 3, "target_modules": "q_proj", "unrelated": 1, "seed": None}
    )
    assert (config.rank, config.epochs, config.target_modules, config.seed) == (
        4,
        3,
        ("q_proj",),
        0,
    )
    with pytest.raises(ValueError, match="rank"):
        LoraTuningConfig.from_dict({"rank": 0})
    with pytest.raises(ValueError, match="learning_rate"):
        LoraTuningConfig.from_dict({"learning_rate": "fast"})
    with pytest.raises(ValueError, match="heldout_fraction"):
        LoraTuningConfig(heldout_fraction=1.0)

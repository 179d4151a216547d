"""LoRA-tune SmolLM2 on (simulated) inspectors' notes: untuned vs tuned on held-out notes.

Usage: ``nice -n 5 .venv/bin/python bench/explain_lora.py [--notes 260] [--epochs 2]``

1. **Facts from real predictions.** PatchCore (``adcore.detectors``) is fitted on a seeded
   sample of the magnetic-tile good training images and scores every test image; the facts of
   each prediction come from :func:`adcore.explain.measure_facts` with the detector's own
   calibrated threshold. They are cached in ``bench/out/explain-lora-facts.json``.
2. **Simulated inspectors' notes.** There are no real notes: each note is written from the
   facts in one fixed, terse plant style (:func:`plant_note`, documented in
   RESULTS_explain_lora.md), with phrasing variation drawn from a seeded RNG per note.
3. **Split** by :func:`adcore.explain.lora_tuning.split_heldout` (stable hash of the note id),
   as the ``tune_explainer`` job does.
4. **Untuned vs tuned.** SmolLM2-135M-Instruct (``load_language_model("smollm2")``) generates a
   text for every held-out note; LoRA (:func:`train_lora`) trains on the rest; the tuned model
   generates again. Both are scored by ROUGE-L F1 against the note and by the fact-check.

Writes ``bench/out/explain-lora.json`` and ``bench/RESULTS_explain_lora.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adcore.explain.fact_check import check_text
from adcore.explain.facts import ExplanationFacts  # noqa: E402
from adcore.explain.lora_tuning import (  # noqa: E402
    LoraTuningConfig,
    NotePair,
    evaluate_explainer,
    folder_size_mb,
    save_adapter,
    split_heldout,
    train_lora,
    training_examples,
)
from adcore.explain.sentences import format_percent, format_value  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
FACTS_CACHE = OUT / "explain-lora-facts.json"
FACTS_SECONDS = OUT / "explain-lora-facts-seconds.txt"
DATASET = HERE.parents[1] / "shared" / "datasets" / "magnetic_tile"
RESULTS = HERE / "RESULTS_explain_lora.md"
N_FIT = 120
"""Good training images PatchCore is fitted on (a seeded sample, to keep the run short)."""

LOOKS = {"darker": "dark", "brighter": "bright", "similar": "faint"}
KINDS = {"elongated": ("crack-like", "line"), "compact": ("spot-like", "pit")}


def plant_note(facts: ExplanationFacts, rng: random.Random) -> str:
    """An inspector's note in the simulated plant's style (every number is one of the facts').

    Style: verdict word first (``Reject``/``Rejected`` or ``OK``/``Good``), then what is seen
    (brightness, shape word, where, share of the tile), then ``Score S vs T`` (the score and
    the threshold). The RNG picks among the synonyms and puts the score first or last.
    """
    score, threshold = format_value(facts.score), format_value(facts.threshold)
    versus = rng.choice(("vs", "vs limit", "against"))
    score_part = f"Score {score} {versus} {threshold}."
    if facts.verdict == "good":
        lead = rng.choice(("OK", "Good"))
        seen = rng.choice(("nothing visible", "clean surface", "no marks"))
        return f"{lead}: {seen}. {score_part}"
    lead = rng.choice(("Reject", "Rejected"))
    if facts.n_regions == 0 or facts.shape is None:
        return f"{lead}: no clear mark. {score_part}"
    shape = rng.choice(KINDS[facts.shape])
    look = LOOKS.get(facts.intensity or "similar", "faint")
    if facts.location == "centre":
        place = "centre, at rim" if facts.at_rim else "centre"
    else:
        place = f"{facts.location} rim" if facts.at_rim else f"{facts.location} area"
    if facts.n_regions == 1:
        seen = f"{look} {shape} mark, {place}, {format_percent(facts.area_percent)}% of tile"
    else:
        seen = (
            f"{facts.n_regions} marks, {format_percent(facts.area_percent)}% of tile; "
            f"largest {look} {shape}, {place}"
        )
    if rng.random() < 0.5:
        return f"{lead}: {seen}. {score_part}"
    return f"{lead}. {score_part} {seen[0].upper()}{seen[1:]}."


def real_facts() -> list[dict]:
    """Facts of every magnetic-tile test image scored by PatchCore (cached)."""
    if FACTS_CACHE.is_file():
        return json.loads(FACTS_CACHE.read_text())
    from adcore.detectors.base import load_many
    from adcore.detectors.registry import build_detector
    from adcore.explain import measure_facts

    good = sorted((DATASET / "train" / "good").glob("*.png"))
    fit_paths = sorted(random.Random(0).sample(good, N_FIT))
    test = sorted((DATASET / "test").glob("*/*.png"))
    start = time.perf_counter()
    detector = build_detector("patchcore", device="cpu")
    detector.fit(fit_paths)
    records = []
    for first in range(0, len(test), 32):
        chunk = test[first : first + 32]
        loaded, failures = load_many(chunk)
        if failures:
            raise RuntimeError(f"unreadable test images: {failures}")
        predictions = detector.predict([image.pixels for image in loaded])
        for path, image, prediction in zip(chunk, loaded, predictions, strict=True):
            facts = measure_facts(
                image.pixels, prediction.anomaly_map, prediction.score, detector.threshold
            )
            records.append({"file": f"{path.parent.name}/{path.name}", "facts": facts.to_json()})
    OUT.mkdir(exist_ok=True)
    FACTS_CACHE.write_text(json.dumps(records))
    seconds = time.perf_counter() - start
    FACTS_SECONDS.write_text(f"{len(records)} {seconds:.0f}\n")
    print(f"scored {len(records)} test images in {seconds:.0f} s", flush=True)
    return records


def facts_timing() -> str:
    """How long fitting PatchCore and scoring the test images took when the cache was made."""
    if not FACTS_SECONDS.is_file():
        return "the facts' scoring time was not recorded."
    count, seconds = FACTS_SECONDS.read_text().split()
    return (
        f"fitting PatchCore and scoring the {count} test images (once, then cached in "
        f"bench/out) took {seconds} s."
    )


def simulated_notes(n_notes: int, seed: int) -> list[NotePair]:
    """``n_notes`` notes (ids 1..n) on a seeded sample of the real predictions' facts."""
    records = real_facts()
    chosen = random.Random(seed).sample(records, min(n_notes, len(records)))
    pairs = []
    for note_id, record in enumerate(chosen, start=1):
        facts = ExplanationFacts.from_json(record["facts"])
        pairs.append(NotePair(note_id, facts, plant_note(facts, random.Random(1000 + note_id))))
    return pairs


def attribute_agreement(heldout: list[NotePair], texts: list[str]) -> dict[str, list[int]]:
    """How often the texts state each fact the way the plant style does: ``[right, asked]``.

    Beyond the fact-check (verdict word, numbers that are *some* fact): the score right after
    ``Score``, the threshold, and for flagged parts with a region the brightness word, a shape
    word of the right kind, the place and the area share.
    """
    counts: dict[str, list[int]] = {}

    def tally(name: str, right: bool) -> None:
        counts.setdefault(name, [0, 0])
        counts[name][0] += int(right)
        counts[name][1] += 1

    for pair, text in zip(heldout, texts, strict=True):
        facts = pair.facts
        tally("score after 'Score'", f"Score {format_value(facts.score)} " in f"{text} ")
        tally("threshold", format_value(facts.threshold) in text)
        if facts.verdict != "defect" or facts.n_regions == 0 or facts.shape is None:
            continue
        words = text.replace(",", " ").replace(";", " ").replace(".", " ").split()
        look = LOOKS.get(facts.intensity or "similar", "faint")
        tally("brightness word", look in words and not (set(LOOKS.values()) - {look}) & set(words))
        wrong = {w for kind, options in KINDS.items() if kind != facts.shape for w in options}
        right = set(KINDS[facts.shape])
        tally("shape word", bool(right & set(words)) and not wrong & set(words))
        tally("place", str(facts.location) in text and ("rim" in words) == facts.at_rim)
        tally("area share", f"{format_percent(facts.area_percent)}% of tile" in text)
    return counts


def main() -> None:
    """Run the benchmark; write the JSON and the RESULTS file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=260)
    parser.add_argument("--epochs", type=int, default=LoraTuningConfig().epochs)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="rewrite the RESULTS file from bench/out/explain-lora.json (no model run)",
    )
    args = parser.parse_args()

    import torch

    from adcore.explain.language_model import load_language_model

    if args.from_json:
        result = json.loads((OUT / "explain-lora.json").read_text())
        _, heldout = split_heldout(simulated_notes(result["n_notes"], args.seed))
        RESULTS.write_text(results_markdown(result, heldout))
        return
    total_start = time.perf_counter()
    pairs = simulated_notes(args.notes, args.seed)
    training, heldout = split_heldout(pairs)
    config = LoraTuningConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
    )
    print(f"{len(training)} training notes, {len(heldout)} held out", flush=True)

    start = time.perf_counter()
    explainer = load_language_model("smollm2")
    load_seconds = time.perf_counter() - start
    untuned = evaluate_explainer(explainer, heldout, max_new_tokens=args.max_new_tokens)
    print("untuned", untuned.summary(), flush=True)
    examples = training_examples(explainer, training)
    tuned_explainer, report = train_lora(
        explainer,
        examples,
        config,
        progress=lambda fraction, message: print(message, flush=True),
    )
    tuned = evaluate_explainer(tuned_explainer, heldout, max_new_tokens=args.max_new_tokens)
    print("tuned", tuned.summary(), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        adapter = save_adapter(tuned_explainer, Path(scratch) / "adapter")
        adapter_mb = folder_size_mb(adapter)
        adapter_files = sorted(path.name for path in adapter.iterdir())
    total_seconds = time.perf_counter() - total_start

    n_flagged = sum(pair.facts.verdict == "defect" for pair in pairs)
    result = {
        "command": " ".join(["nice -n 5 .venv/bin/python bench/explain_lora.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}",
        "n_notes": len(pairs),
        "n_flagged": n_flagged,
        "n_train": len(training),
        "n_heldout": len(heldout),
        "config": config.to_json(),
        "load_seconds": load_seconds,
        "training": report.to_json(),
        "adapter_mb": adapter_mb,
        "adapter_files": adapter_files,
        "untuned": untuned.summary(),
        "tuned": tuned.summary(),
        "total_seconds": total_seconds,
        "examples": [
            {
                "note": pair.text,
                "untuned": before.text,
                "tuned": after.text,
                "tuned_problems": list(after.problems),
            }
            for pair, before, after in zip(
                heldout, untuned.generations, tuned.generations, strict=True
            )
        ],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "explain-lora.json").write_text(json.dumps(result, indent=1))
    RESULTS.write_text(results_markdown(result, heldout))
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=1))


def results_markdown(result: dict, heldout: list[NotePair]) -> str:
    """The RESULTS file for one run (``heldout``: the held-out notes, in the run's order)."""
    untuned, tuned, training = result["untuned"], result["tuned"], result["training"]
    met = tuned["rouge_l"] > untuned["rouge_l"] and tuned["fact_check_pass_rate"] >= 0.95
    failures = [e for e in result["examples"] if e["tuned_problems"]]
    lines = [
        "# Explanation adapter (LoRA on SmolLM2): untuned vs tuned on held-out notes",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {result['machine']}; 2 CPU cores shared with other jobs, no GPU.",
        "",
        "**The inspectors' notes are simulated.** Loupe has no real inspector notes yet. The",
        "facts are real: PatchCore (fitted on 120 good magnetic-tile images) scored the",
        "magnetic-tile test images and `measure_facts` measured each prediction with the",
        "detector's calibrated threshold. Each note is then written from those facts in one",
        "fixed, terse plant style (`plant_note` in bench/explain_lora.py), with synonyms and",
        "the order of the two clauses drawn from a seeded RNG per note, e.g.",
        "",
    ]
    for example in result["examples"][:4]:
        lines.append(f"* `{example['note']}`")
    lines += [
        "",
        "Style: verdict word first (Reject/Rejected, OK/Good); brightness (dark, bright, faint)",
        "and shape word (crack-like or line for elongated regions, spot-like or pit for compact",
        "ones); where (location, rim or area); the regions' share of the tile; `Score S vs T`",
        "(or `vs limit`, `against`). A note states nothing the facts do not say, so a model can",
        "learn it from the facts; real notes would add knowledge the facts lack (defect names,",
        "causes) and score lower.",
        "",
        f"Notes: {result['n_notes']} ({result['n_flagged']} flagged); split by a stable hash of",
        f"the note id: {result['n_train']} train, {result['n_heldout']} held out.",
        "",
        "LoRA: rank {rank}, alpha {alpha}, on {mods}; {epochs} epoch(s), AdamW lr {lr}, batch "
        "{bs}, seed {seed}; loss only on the note's tokens (and the end token); the prompt is the "
        "explainer's own inspection-time prompt{short}.".format(
            short=(
                f" (fewer epochs than the job's default of {LoraTuningConfig().epochs}, to keep"
                " the run near 25 minutes on 2 shared cores)"
                if result["config"]["epochs"] < LoraTuningConfig().epochs
                else ""
            ),
            rank=result["config"]["rank"],
            alpha=result["config"]["alpha"],
            mods=", ".join(result["config"]["target_modules"]),
            epochs=result["config"]["epochs"],
            lr=result["config"]["learning_rate"],
            bs=result["config"]["batch_size"],
            seed=result["config"]["seed"],
        ),
        "",
        "| model | ROUGE-L F1 (mean) | fact-check pass rate | generation time (s) |",
        "|---|---|---|---|",
        f"| SmolLM2-135M-Instruct, untuned | {untuned['rouge_l']:.3f} | "
        f"{100 * untuned['fact_check_pass_rate']:.0f}% | {untuned['seconds']:.0f} |",
        f"| + LoRA adapter | {tuned['rouge_l']:.3f} | "
        f"{100 * tuned['fact_check_pass_rate']:.0f}% | {tuned['seconds']:.0f} |",
        "",
        f"Both on the same {tuned['n']} held-out notes: the model's own text (greedy, at most "
        f"{result['config']['max_new_tokens']} new tokens, before any fact-check fallback) against",
        "the note. Target (tuned ROUGE-L above untuned, pass rate >= 95%): "
        + ("**met**." if met else "**not met**."),
        "",
        f"Training: {training['n_examples']} examples, {training['steps']} steps, "
        f"{training['seconds']:.0f} s ({training['seconds'] / 60:.1f} min); mean loss per epoch "
        + ", ".join(f"{loss:.3f}" for loss in training["epoch_losses"])
        + f". Trainable parameters: {training['trainable_parameters']:,} of "
        f"{training['total_parameters']:,}.",
        "",
        f"Adapter: {result['adapter_mb']:.2f} MiB ({', '.join(result['adapter_files'])}).",
        f"Model load: {result['load_seconds']:.0f} s. Whole run: "
        f"{result['total_seconds'] / 60:.1f} min without scoring the images"
        + (
            " (over the 25-minute budget: the 2 cores were shared with other jobs)"
            if result["total_seconds"] > 25 * 60
            else ""
        )
        + f"; {facts_timing()}",
        "",
        "Held-out examples (note / untuned / tuned):",
        "",
    ]
    for example in result["examples"][:5]:
        lines += [
            f"* note: {example['note']}",
            f"  untuned: {example['untuned']}",
            f"  tuned: {example['tuned']}",
        ]
    lines += ["", f"Tuned generations failing the fact-check: {len(failures)}."]
    for example in failures[:5]:
        lines.append(f"* {example['tuned']} ({'; '.join(example['tuned_problems'])})")
    agreement = attribute_agreement(heldout, [e["tuned"] for e in result["examples"]])
    lines += [
        "",
        "## What the fact-check does not see",
        "",
        "The fact-check wants the right verdict word, only numbers that are *some* measured",
        "fact, and brightness, shape and side words that agree with the largest region. It does",
        "not check that a number is in the right role, nor words outside its lists (e.g.",
        "'faint'). On the same held-out notes, the tuned texts state each fact the plant's way",
        "this often (computed from the run's generations by `attribute_agreement`;",
        "`bench/explain_lora.py --from-json` rebuilds this file from bench/out/explain-lora.json",
        "without running the model):",
        "",
        "| fact in the tuned text | right / asked |",
        "|---|---|",
    ]
    for name, (right, asked) in agreement.items():
        lines.append(f"| {name} | {right} / {asked} |")
    lines += [
        "",
        "In this run the brightness word was right in {} of {} flagged notes. A measured".format(
            *agreement.get("brightness word", [0, 0])
        ),
        "number used in the wrong role (say, the region count as the score) would still pass",
        "the fact-check; the table above counts such slips.",
    ]
    lines += recheck_section(result, heldout)
    return "\n".join(lines) + "\n"


def recheck_section(result: dict, heldout: list[NotePair]) -> list[str]:
    """The run's stored generations checked again with the current fact-check."""
    rates = {}
    for which in ("untuned", "tuned"):
        passed = [
            check_text(example[which], pair.facts).passed
            for example, pair in zip(result["examples"], heldout, strict=True)
        ]
        rates[which] = sum(passed) / len(passed)
    met = result["tuned"]["rouge_l"] > result["untuned"]["rouge_l"] and rates["tuned"] >= 0.95
    return [
        "",
        "## Checked again with the current fact-check",
        "",
        "The fact-check gained the descriptive-word rules (a darker region called bright, an",
        "elongated one a spot, a region placed on the wrong side; adcore/explain/fact_check.py)",
        "during this work; an earlier run with `--epochs 1` (in this file's git history) passed",
        "98% under the old check but 85% under",
        "the new one. The stored generations of the run above, checked again by",
        "`nice -n 5 .venv/bin/python bench/explain_lora.py --from-json` (no model run):",
        "",
        "| model | fact-check pass rate (current check) |",
        "|---|---|",
        f"| SmolLM2-135M-Instruct, untuned | {100 * rates['untuned']:.0f}% |",
        f"| + LoRA adapter | {100 * rates['tuned']:.0f}% |",
        "",
        "The untuned rows were measured before untuned models were made to continue the",
        "verdict words written after the prompt (see the section 'Verdict lead' of",
        "RESULTS_explain.md); with them an untuned model passes the fact-check more often, so",
        "the untuned pass rate here understates today's untuned model.",
        "",
        "Target under the current check (tuned ROUGE-L above untuned, pass rate >= 95%): "
        + ("**met**." if met else "**not met**."),
    ]


if __name__ == "__main__":
    main()

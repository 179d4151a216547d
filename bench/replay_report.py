"""Report and plots of the replay benchmark, from ``bench/out/replay-*.json`` (``replay.py``).

:func:`render_all` writes the whole of ``bench/RESULTS_replay.md``: what is measured, the
targets with "met" / "not met", and one section per run; nothing in it is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SAFETY_FNR = 0.02
SAFETY_WINDOW_FNR = 0.05
# Load target per full run name: (wording, rule on (start, after)).
LOAD_TARGETS = {
    "magnetic-tile": ("at most half its start", lambda start, after: after <= 0.5 * start),
    "elpv-mono": ("lower than its start", lambda start, after: after < start),
}


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def safety(r: dict) -> bool | None:
    """Safety target of one run: cumulative FNR after 100 parts <= 2%, no window above 5%."""
    s = r["summary"]
    if s["stream_fnr_after_100"] is None or s["max_window_fnr_after_100"] is None:
        return None
    return s["stream_fnr_after_100"] <= SAFETY_FNR and s["max_window_fnr_after_100"] <= (
        SAFETY_WINDOW_FNR
    )


def load(name: str, r: dict) -> bool | None:
    """Load target of one full run (None without a snapshot or a target for this dataset)."""
    s = r["summary"]
    if name not in LOAD_TARGETS or s["fpr_at_fnr1_after"] is None:
        return None
    return LOAD_TARGETS[name][1](s["fpr_at_fnr1_start"], s["fpr_at_fnr1_after"])


def targets_section(results: dict[str, dict]) -> list[str]:
    """The targets, as worded in the issue, with the figures of the full runs."""
    full = {name: r for name, r in results.items() if not r.get("smoke")}
    lines = [
        "## Targets",
        "",
        "* **Safety**: on both datasets, after the first 100 streamed parts, the cumulative "
        "stream FNR is at most 2%, and no window of 50 parts exceeds 5%.",
        "* **Load**: after 200 reviews, FPR at the 1%-FNR threshold on the not-yet-streamed "
        "parts is at most half its start on magnetic tile, and lower than its start on ELPV "
        "mono.",
        "",
        "| run | safety: stream FNR after part 100 | worst window after part 100 | safety "
        "| reviews at snapshot | FPR at 1% FNR start -> after | AUROC start -> after | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("magnetic-tile", "elpv-mono"):
        r = full.get(name)
        if r is None:
            lines.append(f"| {name} | not run yet | | n/a | | | | n/a |")
            continue
        s = r["summary"]
        lines.append(
            f"| {name} | {_pct(s['stream_fnr_after_100'])} | "
            f"{_pct(s['max_window_fnr_after_100'])} | {_met(safety(r))} | "
            f"{s['reviews_at_snapshot'] or 'not reached'} | {_pct(s['fpr_at_fnr1_start'])} -> "
            f"{_pct(s['fpr_at_fnr1_after'])} | {_f(s['auroc_start'])} -> "
            f"{_f(s['auroc_after'])} | {_met(load(name, r))} |"
        )
    others = sorted(set(results) - {"magnetic-tile", "elpv-mono"})
    if others:
        lines += [
            "",
            "Other runs (smoke runs on a subset, or datasets without a target), not counted "
            "for the targets: " + ", ".join(f"`{n}`" for n in others) + ".",
        ]
    return [*lines, ""]


def render_dataset(name: str, r: dict) -> list[str]:
    """The Markdown section of one run ``r``."""
    st, sec, tot, snap, m = r["settings"], r["seconds"], r["totals"], r["snapshot"], r["machine"]
    smoke = " (**smoke run**: a subset, not the benchmark)" if r.get("smoke") else ""
    lines = [
        f"## {name}{smoke}",
        "",
        f"{r['dataset']}. Streamed: {r['n_test']} parts ({r['n_test_defect']} defects). "
        f"Command: `{r['command']}`; finished {r['finished_utc']}, "
        f"{sec['total'] / 60:.1f} min wall. Machine: {m['platform']}, {m['cpus']} CPUs, "
        f"Python {m['python']}, load average {m['load_average_start'][0]} at the start and "
        f"{m['load_average_end'][0]} at the end.",
        "",
        f"Settings: PatchCore at {st['image_size']} px (product defaults otherwise) on "
        f"{st['n_train']} train images; start threshold {_f(st['start_threshold'])}; stream "
        f"seed {st['seed']}; audit share {_pct(st['audit_share'])}; project target FNR "
        f"{st['target_fnr']}; recalibration queued every {st['recalibrate_every']} reviews, "
        f"refit every {st['refit_every'] or 'never'} reviews; windows of {st['window']} parts.",
        "",
        f"Loop: {tot['reviews']} reviews ({tot['audits_reviewed']} of them audit samples; "
        f"{tot['audits']} parts drawn for audit), {tot['instant_updates']} instant updates "
        f"(of {tot['instant_attempts']} Good-on-flagged reviews). Jobs run / promoted through "
        "the gate: "
        + ", ".join(f"{k} {n} / {tot['promoted'].get(k, 0)}" for k, n in tot["jobs"].items())
        + f". Final active detector v{tot['final_detector_version']}, feedback scorer "
        f"{'v' + str(tot['final_scorer_version']) if tot['final_scorer_version'] else 'none'}.",
        "",
        f"Times: first fit {sec['first_fit']:.0f} s; start-model scores of the test split "
        f"{sec['start_scores']:.0f} s; inspection {sec['inspect_mean']:.2f} s per part; "
        f"instant update + re-scoring {_f(sec['instant_mean'], 1)} s on average; jobs "
        + ", ".join(f"{k} {v:.0f} s" for k, v in sec["jobs"].items())
        + " on average.",
        "",
    ]
    if snap is None:
        lines += [f"The stream gave fewer than {st['snapshot_reviews']} reviews: no snapshot.", ""]
    else:
        lines += [
            f"Snapshot at {snap['reviews']} reviews (streamed part {snap['after_position'] + 1})"
            f", on the **{snap['n']} not-yet-streamed parts** ({snap['n_defect']} defects), "
            f"FNR-first threshold on their true labels (target FNR {st['target_fnr']}):",
            "",
            "| model | AUROC | FPR at the FNR-first threshold | its FNR |",
            "|---|---|---|---|",
        ]
        rows = [
            ("start (detector v1)", snap["start"]),
            (f"active detector v{snap['detector_version']}", snap["detector_now"]),
        ]
        if snap["scorer_now"]:
            rows.append((f"active feedback scorer v{snap['scorer_version']}", snap["scorer_now"]))
        for label, row in rows:
            lines.append(
                f"| {label} | {_f(row['auroc'])} | {_pct(row['fpr_at_target'])} | "
                f"{_pct(row['fnr_at_target'])} |"
            )
        lines += [
            "",
            f"The decision maker at the snapshot is the {snap['now_is']}"
            + (f" ({snap['scorer_note']})" if snap["scorer_note"] else "")
            + ".",
            "",
        ]
    lines += [
        "Per window (the verdicts stored by inspection; `start` = detector v1 at its own "
        "threshold on the same parts, no learning):",
        "",
        "| parts | good / defect | FNR | FPR | reviewed | audits | reviews so far | threshold "
        "| detector | scorer | waiting in queue | start FNR | start FPR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in r["windows"]:
        scorer = f"v{w['scorer_version_end']}" if w["scorer_version_end"] else "-"
        lines.append(
            f"| {w['first']}-{w['last']} | {w['n_good']} / {w['n_defect']} | {_pct(w['fnr'])} "
            f"| {_pct(w['fpr'])} | {_pct(w['review_share'])} | {w['audits']} | "
            f"{w['reviews_so_far']} | {_f(w['threshold_end'])} | v{w['detector_version_end']} "
            f"| {scorer} | {w['queue_backlog_end']} | {_pct(w['start_fnr'])} | "
            f"{_pct(w['start_fpr'])} |"
        )
    scorer_jobs = [j for j in r["jobs"] if j["kind"] == "train_feedback_scorer"]
    failed = [j for j in scorer_jobs if j["status"] != "succeeded"]
    refused = [j for j in scorer_jobs if j["candidate_version"] and not j["promoted"]]
    lines += [
        "",
        f"Automatic `train_feedback_scorer` jobs: {len(scorer_jobs)} ({len(failed)} ended "
        f"without a candidate, {len(refused)} candidates refused by the gate, "
        f"{sum(j['promoted'] for j in scorer_jobs)} promoted). Other jobs, and the promoted "
        "scorers, in order (a candidate is promoted only when its gate passed):",
        "",
        "| after review | job | status | candidate | promoted | why not / message |",
        "|---|---|---|---|---|---|",
    ]
    for j in r["jobs"]:
        if j["kind"] == "train_feedback_scorer" and not j["promoted"]:
            continue
        why = "; ".join(j["refusals"]) if j["refusals"] else (j["message"] or "")
        why = why.replace("|", "/").replace("\n", " ")[:240]
        candidate = f"v{j['candidate_version']}" if j["candidate_version"] else "-"
        lines.append(
            f"| {j['after_reviews']} | {j['kind']} | {j['status']} | {candidate} | "
            f"{'yes' if j['promoted'] else 'no'} | {why} |"
        )
    if failed:
        lines += ["", f"First scorer job without a candidate: {failed[0]['message'][:300]}"]
    if refused:
        lines += ["", f"First refused scorer: {'; '.join(refused[0]['refusals'])[:300]}"]
    lines += ["", f"![{name}](replay_{name}.png)", ""]
    return lines


def plot_dataset(name: str, r: dict, path: Path) -> None:
    """Stream FNR, FPR and review share per window of run ``r``, vs the frozen start model."""
    half = r["settings"]["window"] / 2  # a short last window is too noisy to plot
    ws = [w for w in r["windows"] if w["last"] - w["first"] + 1 >= half]
    x = [w["last"] for w in ws]

    def series(key: str) -> list[float]:
        return [float("nan") if w[key] is None else 100 * w[key] for w in ws]

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(x, series("fnr"), "o-", label="loop (stored verdicts)")
    axes[0].plot(x, series("start_fnr"), "s--", label="frozen start model")
    axes[0].axhline(100 * SAFETY_WINDOW_FNR, color="tab:red", lw=0.8, ls=":", label="5%")
    axes[0].set_title("FNR per window (%)")
    axes[1].plot(x, series("fpr"), "o-", label="loop (stored verdicts)")
    axes[1].plot(x, series("start_fpr"), "s--", label="frozen start model")
    axes[1].set_title("FPR per window (%)")
    axes[2].plot(x, series("review_share"), "o-", color="tab:green", label="reviewed (%)")
    axes[2].set_ylim(0, 105)
    twin = axes[2].twinx()
    twin.plot(x, [w["reviews_so_far"] for w in ws], "k:", label="reviews so far")
    twin.set_ylabel("reviews so far")
    axes[2].set_title("Review share, audits included (%)")
    for ax in axes:
        ax.set_xlabel("parts streamed")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Replay through the product: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


HEAD = """# Replay benchmark: the product's review-and-learn loop

Everything below is written by `bench/replay.py --render` from `bench/out/replay-*.json`.

`bench/replay.py` replays inspection, review and learning on real data by calling the
product's own functions in-process, on a temporary data directory and SQLite database; no
policy (verdict, review choice, threshold, training, promotion) exists only in the benchmark:

1. The first model is `services.model_management.train_first_model` (PatchCore) on the train
   split.
2. The test split is streamed once in a seeded shuffled order; each part goes through
   `services.inspection.inspect_uploads` with the active detector (reloaded whenever another
   version becomes active; seeded audit draws). The decision is the stored prediction's
   verdict.
3. An oracle inspector (ground-truth label) reviews exactly the parts that
   `db.review_queue.review_queue` offers right after their inspection (flagged, near the
   threshold, audit samples) through the review service the Review page calls,
   `services.reviewing.label_part`: the review, then what it calls for (a recalibration when
   an audit finds a missed defect, the feedback scorer's training rule), and for a Good on a
   flagged part an `instant_update` job (`services.training.instant_learning`: instant
   update, unless the part is in the held-out share; waiting parts re-scored), run at once.
4. A manager queues `recalibrate_threshold` every 25 reviews and `refit_detector` every 100;
   the automatic jobs (recalibration after an audit miss, `train_feedback_scorer`) are queued
   by the product. All jobs run in the
   product's worker (`workers.worker.JobWorker`); each candidate is promoted with
   `db.model_versions.promote_model_version` only when its gate passes (never overridden).

What is measured:

* **Per window of 50 streamed parts**: FNR and FPR of the verdicts inspection stored (each
  part is judged before its own label is used), the share of the window's parts reviewed
  (audit samples included), the reviews so far, and the frozen start model (detector v1 at
  its own threshold, no learning) on the same parts.
* **Safety figures**: the stream FNR over the defects streamed after the first 100 parts, and
  the worst FNR of a window starting after part 100.
* **At the snapshot** (when the reviews reach 200): on the parts not yet streamed, AUROC and
  the FPR at the FNR-first threshold chosen on their true labels with target FNR 1%
  (`adcore.thresholds.select_threshold`): start model vs the current decision maker (the
  active detector, or the active feedback scorer's p(defect) when one is active and fits the
  active detector). Scores come from each model's own `predict`.
* Parts that a later, lower threshold would flag after they streamed are not reviewed by the
  oracle (it reviews each part right after its inspection); how many wait in the queue is
  shown per window.
"""


def render_all(out_dir: Path, bench_dir: Path) -> None:
    """Rewrite ``RESULTS_replay.md`` and the plots from every ``out_dir/replay-*.json``."""
    results = {
        path.stem.removeprefix("replay-"): json.loads(path.read_text())
        for path in sorted(out_dir.glob("replay-*.json"))
    }
    lines = [HEAD, *targets_section(results)]
    order = sorted(results, key=lambda n: (results[n].get("smoke", False), n))
    for name in order:
        lines += render_dataset(name, results[name])
        plot_dataset(name, results[name], bench_dir / f"replay_{name}.png")
    (bench_dir / "RESULTS_replay.md").write_text("\n".join(lines))

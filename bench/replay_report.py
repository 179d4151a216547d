"""Markdown tables and plots for the replay benchmark (reads ``bench/out/replay-*.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _target(start: dict, now: dict) -> str:
    """Met when FPR at most halves and FNR is no higher."""
    if None in (start["fpr"], now["fpr"], start["fnr"], now["fnr"]):
        return "n/a"
    met = now["fpr"] <= 0.5 * start["fpr"] and now["fnr"] <= start["fnr"]
    return "**met**" if met else "not met"


def render_dataset(name: str, r: dict) -> list[str]:
    """The Markdown section of one dataset's replay result ``r`` (settings, totals, windows)."""
    s, cp = r["settings"], r["checkpoint"]
    sec, tot = r["seconds"], r["totals"]
    lines = [
        f"## {name}",
        "",
        f"{r['dataset']}. Command: `{r['command']}`; finished {r['finished_utc']}, "
        f"{sec['total'] / 60:.1f} min wall (fit {sec['fit']:.0f} s, test embedding "
        f"{sec['embed_test']:.0f} s).",
        "",
        f"Settings: {s['image_size']} px, PatchCore defaults otherwise (coreset ratio "
        f"{s['patchcore']['coreset_ratio']}, calibration fraction "
        f"{s['patchcore']['calibration_fraction']}, good quantile "
        f"{s['patchcore']['good_quantile']}); stream seed {s['seed']}; review margin "
        f"{s['margin']} (review when score >= threshold x {1 - s['margin']:.2f}); target FNR "
        f"{s['target_fnr']}; refit every {s['retrain_every']} reviews; windows of "
        f"{s['window']} parts.",
        "",
        f"Loop totals: {tot['reviews']} reviews, {tot['instant_updates']} instant updates, "
        f"{tot['retrains']} refits, {tot['confirmed_good']} parts confirmed good. "
        f"`update()` took {_f(sec['update_mean'], 3)} s on average (max "
        f"{_f(sec['update_max'], 3)} s); saving the final model {_f(sec['save_final'], 2)} s, "
        f"loading it {_f(sec['load_final'], 2)} s; a refit {_f(sec['retrain_mean'], 0)} s. "
        f"Cached re-scoring vs `predict()`: max relative difference "
        f"{r['max_rel_dev_cached_vs_predict']:.1e}.",
        "",
    ]
    if cp is None:
        lines += [f"The stream produced fewer than {s['checkpoint']} reviews: no checkpoint.", ""]
    else:
        rs, rn = cp["remainder"]["start"], cp["remainder"]["now"]
        lines += [
            f"Snapshot after {s['checkpoint']} reviews (reached at streamed part "
            f"{cp['after_position'] + 1}), evaluated on the **{rs['n']} not-yet-streamed "
            f"parts** ({rs['n_defect']} defects), start model vs model of that moment:",
            "",
            "| measure (held-out remainder) | start | after reviews | target (FPR <= half, "
            "FNR no higher) |",
            "|---|---|---|---|",
            f"| operating threshold | {_f(rs['operating']['threshold'])} (fit calibration) | "
            f"{_f(rn['operating']['threshold'])} (FNR-first on reviewed parts) | |",
            f"| operating FPR / FNR | {_pct(rs['operating']['fpr'])} / "
            f"{_pct(rs['operating']['fnr'])} | {_pct(rn['operating']['fpr'])} / "
            f"{_pct(rn['operating']['fnr'])} | {_target(rs['operating'], rn['operating'])} |",
            f"| FNR-first threshold on the remainder's true labels: FPR / FNR | "
            f"{_pct(rs['fnr_first']['fpr'])} / {_pct(rs['fnr_first']['fnr'])} | "
            f"{_pct(rn['fnr_first']['fpr'])} / {_pct(rn['fnr_first']['fnr'])} | "
            f"{_target(rs['fnr_first'], rn['fnr_first'])} |",
            f"| image AUROC | {_f(rs['auroc'])} | {_f(rn['auroc'])} | |",
            "",
        ]
        ws, wn = r["start"]["whole"], cp["whole_now"]
        lines += [
            f"Whole test split ({ws['n']} parts; optimistic after the loop, which learned from "
            f"the streamed parts): operating FPR / FNR {_pct(ws['operating']['fpr'])} / "
            f"{_pct(ws['operating']['fnr'])} at the start, {_pct(wn['operating']['fpr'])} / "
            f"{_pct(wn['operating']['fnr'])} after {s['checkpoint']} reviews; FNR-first "
            f"FPR {_pct(ws['fnr_first']['fpr'])} -> {_pct(wn['fnr_first']['fpr'])}; AUROC "
            f"{_f(ws['auroc'])} -> {_f(wn['auroc'])}.",
            "",
        ]
    lines += [
        "Per window (decisions as made on the stream, by the model and threshold of that "
        "moment; `frozen` = the start model and threshold without any learning):",
        "",
        "| parts | good / defect | FNR | FPR | to human | reviews so far | threshold at end "
        "| bank | frozen FNR | frozen FPR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in r["windows"]:
        lines.append(
            f"| {w['parts']} | {w['n_good']} / {w['n_defect']} | {_pct(w['fnr'])} | "
            f"{_pct(w['fpr'])} | {_pct(w['to_human'])} | {w['reviews_so_far']} | "
            f"{_f(w['threshold_end'])} | {w['bank_end']} | {_pct(w['baseline_fnr'])} | "
            f"{_pct(w['baseline_fpr'])} |"
        )
    lines += ["", f"![{name}](replay_{name}.png)", ""]
    return lines


def plot_dataset(name: str, r: dict, path: Path) -> None:
    """Plot FPR, FNR and the share sent to a human per window of ``r`` to ``path``."""
    half = r["settings"]["window"] / 2  # a short last window is too noisy to plot
    ws = [w for w in r["windows"] if w["n_good"] + w["n_defect"] >= half]
    x = [int(w["parts"].split("-")[1]) for w in ws]

    def series(key: str) -> list[float]:
        return [float("nan") if w[key] is None else 100 * w[key] for w in ws]

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(x, series("fpr"), "o-", label="loop")
    axes[0].plot(x, series("baseline_fpr"), "s--", label="frozen start model")
    axes[0].set_title("FPR per window (%)")
    axes[1].plot(x, series("fnr"), "o-", label="loop")
    axes[1].plot(x, series("baseline_fnr"), "s--", label="frozen start model")
    axes[1].set_title("FNR per window (%)")
    axes[2].plot(x, series("to_human"), "o-", color="tab:green", label="sent to a human (%)")
    twin = axes[2].twinx()
    twin.plot(x, [w["reviews_so_far"] for w in ws], "k:", label="reviews so far")
    twin.set_ylabel("reviews so far")
    axes[2].set_title("Share to a human (%)")
    for ax in axes:
        ax.set_xlabel("parts streamed")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.suptitle(f"Replay: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


MARKER = "<!-- measured: everything below is rewritten by `bench/replay.py --render` -->"


def render_all(out_dir: Path, bench_dir: Path) -> None:
    """Rewrite the measured part of ``RESULTS_replay.md`` and the plots.

    The hand-written text above :data:`MARKER` is kept; everything below it is regenerated
    from every ``out_dir/replay-*.json``.
    """
    target = bench_dir / "RESULTS_replay.md"
    head = target.read_text().split(MARKER)[0] if target.exists() else "# Replay benchmark\n\n"
    lines = [head.rstrip() + "\n", MARKER, ""]
    for path in sorted(out_dir.glob("replay-*.json")):
        name = path.stem.removeprefix("replay-")
        result = json.loads(path.read_text())
        lines += render_dataset(name, result)
        plot_dataset(name, result, bench_dir / f"replay_{name}.png")
    target.write_text("\n".join(lines))

"""Greedy k-center coreset selection (farthest-point sampling), exact and fast on CPU.

PatchCore keeps a small subset of the training patches whose covering radius is close to the
best possible: the greedy k-center algorithm repeatedly adds the patch farthest from the subset
chosen so far, then lowers every patch's distance to the subset by its distance to the new
patch. Each step is one pass over the rows, computed as ``|x - c|`` (not the expanded
``|x|^2 - 2 x.c + |c|^2``, whose rounding can swap near-tied picks), so the selection is exactly
the textbook one on the full features (no random projection).

An earlier version skipped rows with the triangle inequality (a row can only move closer to a
new centre ``c`` when its own centre lies within twice its radius of ``c``). On real patch
features (150-170 dimensions) few rows can be skipped and the bookkeeping cost more than it
saved: the plain pass gives the same picks several times faster (timed on magnetic-tile
patches while working on issue 13; the fit times are in ``bench/RESULTS.md``). What makes the
fit fast is the two stages of :func:`two_stage_coreset`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CoresetResult:
    """Outcome of a greedy coreset selection.

    Attributes:
        indices: (M,) int64 indices of the selected rows, in selection order.
        radius: The covering radius after selection: the largest distance of any input row to
            its nearest selected row.
    """

    indices: torch.Tensor
    radius: float


def greedy_coreset(
    features: torch.Tensor,
    n_select: int,
    *,
    initial_centers: torch.Tensor | None = None,
    stop_radius: float | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> CoresetResult:
    """Select rows by greedy farthest-point sampling.

    Args:
        features: (N, D) float rows to choose from.
        n_select: Maximum number of rows to select (clipped to N).
        initial_centers: Optional (K, D) rows already chosen (for example an existing memory
            bank). Selection then continues from them: the first pick is the row farthest from
            them instead of a random row.
        stop_radius: Stop early once every row is within this distance of a selected row or an
            initial centre.
        seed: Seed of the random first pick when there are no initial centres.
        progress: Called as ``progress(done, total)`` every few hundred selections.

    Returns:
        The selected indices (into ``features``) and the final covering radius.
    """
    x = features.detach().float()
    n = x.shape[0]
    n_select = min(int(n_select), n)
    if n == 0 or n_select <= 0:
        return CoresetResult(torch.empty(0, dtype=torch.long), 0.0)

    # r: distance of every row to its nearest chosen row (or initial centre).
    if initial_centers is not None and len(initial_centers) > 0:
        r = _nearest_distance(x, initial_centers.detach().float().to(x.device))
        next_index = int(torch.argmax(r))
    else:
        r = torch.full((n,), float("inf"), device=x.device)
        generator = torch.Generator().manual_seed(seed)
        next_index = int(torch.randint(n, (1,), generator=generator))

    selected: list[int] = []
    for step in range(n_select):
        if stop_radius is not None and float(r[next_index]) <= stop_radius:
            break
        selected.append(next_index)
        torch.minimum(r, torch.linalg.vector_norm(x - x[next_index], dim=1), out=r)
        next_index = int(torch.argmax(r))
        if progress is not None and (step + 1) % 256 == 0:
            progress(step + 1, n_select)
    if progress is not None:
        progress(len(selected), n_select)
    return CoresetResult(torch.tensor(selected, dtype=torch.long), float(r.max()))


def _nearest_distance(x: torch.Tensor, centers: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Distance of every row of ``x`` to its nearest centre (chunked cdist).

    Args:
        x: (N, D) rows.
        centers: (K, D) centres.
        chunk: Rows per block, to bound memory.

    Returns:
        (N,) distances.
    """
    return torch.cat(
        [
            torch.cdist(x[start : start + chunk], centers).amin(dim=1)
            for start in range(0, x.shape[0], chunk)
        ]
    )


def per_group_coreset(groups: torch.Tensor, n_per_group: int, *, seed: int = 0) -> torch.Tensor:
    """Greedy k-center inside every group at once (all groups advance in lock-step).

    Args:
        groups: (G, P, D) rows, e.g. the P patch features of each of G training images.
        n_per_group: Rows to keep from each group (clipped to P).
        seed: Seed of the random first pick in each group.

    Returns:
        (G, K) int64 indices into the P axis, K = min(n_per_group, P).
    """
    g, p, _ = groups.shape
    k = min(int(n_per_group), p)
    x = groups.detach().float()
    sq = (x * x).sum(-1)  # (G, P)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.empty((g, k), dtype=torch.long)
    current = torch.randint(p, (g,), generator=generator).to(x.device)
    r2 = torch.full((g, p), float("inf"), device=x.device)
    rows = torch.arange(g, device=x.device)
    for step in range(k):
        picks[:, step] = current.cpu()
        c = x[rows, current]  # (G, D)
        d2 = sq - 2.0 * torch.bmm(x, c.unsqueeze(-1)).squeeze(-1) + sq[rows, current].unsqueeze(1)
        r2 = torch.minimum(r2, d2.clamp_min_(0.0))
        current = torch.argmax(r2, dim=1)
    return picks


def two_stage_coreset(
    groups: torch.Tensor,
    n_select: int,
    *,
    oversample: int = 10,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Fast approximate greedy coreset of grouped rows (patches grouped by image).

    Stage 1 runs greedy k-center inside each image (vectorised over images) and keeps
    ``oversample * n_select`` rows in all. Stage 2 runs the exact :func:`greedy_coreset` on that
    pool. By the triangle inequality the covering radius over all rows is at most the sum of the
    two stages' radii; since the patches of one image are highly redundant, stage 1 loses little
    (measured in ``bench/``: same image AUROC as the exact selection at a fraction of the time).

    Args:
        groups: (G, P, D) rows grouped, e.g. per training image.
        n_select: Rows to select in all.
        oversample: Pool size of stage 2, as a multiple of ``n_select``.
        seed: Random seed.
        progress: Forwarded to :func:`greedy_coreset`.

    Returns:
        (M,) int64 indices into the flattened (G * P, D) rows, M = min(n_select, G * P).
    """
    g, p, d = groups.shape
    per_group = -(-oversample * int(n_select) // g)  # ceil division
    if per_group >= p:
        flat = groups.reshape(g * p, d)
        return greedy_coreset(flat, n_select, seed=seed, progress=progress).indices
    local = per_group_coreset(groups, per_group, seed=seed)  # (G, K)
    flat_index = (local + torch.arange(g).unsqueeze(1) * p).reshape(-1)
    pool = groups.reshape(g * p, d)[flat_index.to(groups.device)]
    chosen = greedy_coreset(pool, n_select, seed=seed, progress=progress).indices
    return flat_index[chosen]

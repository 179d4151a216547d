"""Greedy coreset: exactness against a naive reference, continuation, stopping, two-stage."""

from __future__ import annotations

import torch

from adcore.coreset import greedy_coreset, per_group_coreset, two_stage_coreset


def naive_greedy(x: torch.Tensor, m: int, first: int) -> tuple[list[int], float]:
    chosen = [first]
    d = torch.linalg.vector_norm(x - x[first], dim=1)
    for _ in range(m - 1):
        i = int(d.argmax())
        chosen.append(i)
        d = torch.minimum(d, torch.linalg.vector_norm(x - x[i], dim=1))
    return chosen, float(d.max())


def test_greedy_matches_naive_selection() -> None:
    x = torch.randn(3000, 16, generator=torch.Generator().manual_seed(1))
    result = greedy_coreset(x, 60, seed=3)
    reference, radius = naive_greedy(x, 60, int(result.indices[0]))
    assert result.indices.tolist() == reference
    assert abs(result.radius - radius) < 1e-4


def test_continuation_from_initial_centres_and_stop_radius() -> None:
    gen = torch.Generator().manual_seed(2)
    bank = torch.randn(50, 8, generator=gen)
    near = bank[:10] + 0.001 * torch.randn(10, 8, generator=gen)
    far = torch.randn(5, 8, generator=gen) + 20.0
    new = torch.cat([near, far])
    result = greedy_coreset(new, len(new), initial_centers=bank, stop_radius=0.5)
    # Only the far rows are needed to bring every new row within 0.5 of the bank.
    assert set(result.indices.tolist()) <= set(range(10, 15))
    assert len(result.indices) >= 1
    assert result.radius <= 0.5


def test_empty_and_oversized_requests() -> None:
    x = torch.randn(5, 3)
    assert greedy_coreset(x, 0).indices.numel() == 0
    assert sorted(greedy_coreset(x, 99).indices.tolist()) == list(range(5))


def test_per_group_and_two_stage_shapes() -> None:
    groups = torch.randn(6, 100, 12, generator=torch.Generator().manual_seed(0))
    local = per_group_coreset(groups, 7)
    assert local.shape == (6, 7)
    assert all(len(set(row.tolist())) == 7 for row in local)
    chosen = two_stage_coreset(groups, 20, oversample=2)
    assert chosen.shape == (20,) and len(set(chosen.tolist())) == 20
    assert int(chosen.max()) < 600
    # The two-stage radius is bounded by the sum of both stages; check it is a real cover.
    flat = groups.reshape(600, 12)
    radius = torch.cdist(flat, flat[chosen]).min(1).values.max()
    assert radius < torch.cdist(flat, flat[chosen[:1]]).min(1).values.max()

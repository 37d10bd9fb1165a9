"""Exact top-n selection against torch.topk, on the cases that break approximate ones."""

import numpy as np
import pytest
import torch

from workbench.core import compiled
from workbench.fisher import kernels
from workbench.fisher.selection import RunningTop, candidates, top_entries, top_entries_of_rows


def _reference(values: torch.Tensor, n: int | None):
    """torch.topk of |values|, zeros dropped: the kept magnitudes, sorted."""
    magnitudes = values.abs()
    nonzero = magnitudes[magnitudes > 0]
    kept = nonzero if n is None or n >= nonzero.numel() else nonzero.topk(n).values
    return kept.sort().values


def _cases():
    g = torch.Generator().manual_seed(0)
    heavy = torch.randn(200_000, generator=g) ** 5
    ties = torch.randint(-3, 4, (100_000,), generator=g).float()  # few distinct values, many ties at every cut
    zeros = torch.zeros(150_000)
    zeros[::1000] = torch.randn(150, generator=g)  # fewer non-zeros than n
    blocky = torch.zeros(300_000)
    blocky[100_000:110_000] = torch.randn(10_000, generator=g) + 10  # all mass in one stretch
    constant = torch.full((50_000,), 0.5)
    return {"heavy tails": heavy, "ties": ties, "mostly zeros": zeros, "one dense stretch": blocky, "constant": constant}


@pytest.mark.parametrize("name", sorted(_cases()))
@pytest.mark.parametrize("n", [1, 100, 8192, 65_536, None])
def test_top_entries_match_topk(name, n):
    values = _cases()[name]
    position, kept = top_entries(values, n)
    assert (position[1:] > position[:-1]).all(), "positions ascend"
    torch.testing.assert_close(kept, values[position])
    torch.testing.assert_close(kept.abs().sort().values, _reference(values, n))
    if n is not None and position.numel() == n:  # nothing dropped is larger than what is kept
        dropped = torch.ones_like(values, dtype=torch.bool)
        dropped[position] = False
        assert values[dropped].abs().max() <= kept.abs().min()


def test_ties_at_the_cut_keep_the_first_positions():
    values = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    assert top_entries(values, 3)[0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("name", sorted(_cases()))
@pytest.mark.parametrize("n", [50, 8192, None])
def test_running_top_over_shuffled_blocks_matches_topk(name, n):
    values = _cases()[name]
    order = torch.randperm(values.numel(), generator=torch.Generator().manual_seed(1))
    top = RunningTop(n)
    for chunk in order.split(7_777):  # blocks in no particular order
        hit = candidates(values[chunk].abs(), top.floor, n)
        top.add(chunk[hit], values[chunk][hit])
    position, kept = top.result()
    assert (position[1:] > position[:-1]).all()
    torch.testing.assert_close(kept, values[position])
    torch.testing.assert_close(kept.abs().sort().values, _reference(values, n))


def test_running_top_with_nothing_added():
    position, kept = RunningTop(10).result()
    assert position.numel() == kept.numel() == 0
    assert position.dtype == torch.int64 and kept.dtype == torch.float32


def test_candidates_never_returns_zeros_or_entries_below_the_floor():
    magnitudes = torch.tensor(np.array([0.0, 0.5, 1.0, 0.0, 2.0], dtype=np.float32))
    assert candidates(magnitudes, 0.0, None).tolist() == [1, 2, 4]
    assert candidates(magnitudes, 1.0, None).tolist() == [2, 4]



@pytest.mark.parametrize("n", [1, 100, 8192, 65_536, None])
def test_top_entries_of_rows_equal_top_entries_of_each_row(n):
    """The all-rows-at-once selection (GPUs) keeps what the per-row one keeps, ties included."""
    cases = _cases()
    width = max(v.numel() for v in cases.values())
    rows = torch.zeros((len(cases), width))
    for i, v in enumerate(cases.values()):
        rows[i, : v.numel()] = v
    rows[2] = rows[2].roll(12_345)  # the sparse row not at the start
    for (position, kept), row in zip(top_entries_of_rows(rows, n), rows):
        expected_position, expected_kept = top_entries(row, n)
        assert torch.equal(position, expected_position)
        assert torch.equal(kept, expected_kept)


def _row_whose_sample_sees_only_large_entries(N: int) -> torch.Tensor:
    """N entries: 2.0 at the fixed sample's positions, 6,000 others in [1, 2), the rest 1e-3,
    so that for n = 8,000 fewer than n entries reach the sample's threshold."""
    from workbench.fisher.selection import _sample_of

    row = torch.full((N,), 1e-3)
    sampled = torch.zeros(N, dtype=torch.bool)
    sampled[torch.from_numpy(_sample_of(N))] = True
    row[sampled] = 2.0
    row[(~sampled).nonzero().squeeze(1)[:6_000]] = 1.0 + torch.arange(6_000) / 6_000
    return row


def test_top_entries_of_rows_rank_every_non_zero_when_the_sample_misjudges():
    """The fixed sample sees only large entries, so fewer than n reach its threshold: every
    non-zero of that row is ranked (and the other row is not disturbed)."""
    N, n = 100_000, 8_000
    row = _row_whose_sample_sees_only_large_entries(N)
    assert int((row >= 2.0).sum()) < n
    rows = torch.stack([row, torch.randn(N, generator=torch.Generator().manual_seed(0))])
    for (position, kept), one in zip(top_entries_of_rows(rows, n), rows):
        assert position.numel() == n
        torch.testing.assert_close(kept.abs().sort().values, _reference(one, n))
        assert torch.equal(position, top_entries(one, n)[0])


needs_numba = pytest.mark.skipif(not compiled.available(), reason="needs numba")


def _selected(written: kernels.Written, n, scales=None):
    """The kernel's picks, read from the chunk's arrays it gives, as each example's (flat
    positions s·m + j, values), and the Grams."""
    selected = kernels.top_entries_of_written(written, n, scales)
    values, columns, row_offsets = selected.csr()
    k = selected.row_counts.shape[1]
    kept = []
    for i in range(written.n_examples):
        slots = [s * written.m + columns[row_offsets[i * k + s] : row_offsets[i * k + s + 1]] for s in range(k)]
        kept.append((torch.from_numpy(np.concatenate(slots)), torch.from_numpy(values[row_offsets[i * k] : row_offsets[i * k + k]])))
    return kept, selected.grams


@needs_numba
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 100, 8192, 65_536, None])
def test_compiled_selection_keeps_what_top_entries_keeps(k, n):
    """The CPU kernel (each example's top entries and Grams in one call) against the numpy
    selection, example by example, on the cases that break approximate selections."""
    cases = list(_cases().values())
    m = max(v.numel() for v in cases) // k + 1
    A = torch.zeros((len(cases), k, m))
    for i, v in enumerate(cases):
        A[i].view(-1)[: v.numel()] = v
    kept, grams = _selected(kernels.Written.of_examples(A), n)
    for i in range(len(cases)):
        position, values = top_entries(A[i].reshape(-1), n)
        assert torch.equal(kept[i][0], position), i
        assert torch.equal(kept[i][1], values), i
    A64 = A.double()
    torch.testing.assert_close(grams, A64 @ A64.transpose(1, 2), rtol=1e-12, atol=0)


@needs_numba
def test_compiled_selection_ranks_every_non_zero_when_the_sample_misjudges():
    N, n = 100_000, 8_000
    row = _row_whose_sample_sees_only_large_entries(N)
    kept, _ = _selected(kernels.Written.of_examples(row.reshape(1, 2, N // 2)), n)
    position, values = top_entries(row, n)
    assert position.numel() == n
    assert torch.equal(kept[0][0], position) and torch.equal(kept[0][1], values)


@needs_numba
@pytest.mark.parametrize("n", [100, 8192, None])
def test_compiled_selection_of_slots_given_as_multiples_of_one_gradient(n):
    """Two classes: slot s of example i is scale[i, s] · v_i, never written out; the kernel
    keeps what it keeps of the slots written out, ties and exact zeros included."""
    cases = list(_cases().values())
    m = max(v.numel() for v in cases)
    v = torch.zeros((len(cases), 1, m))
    for i, case in enumerate(cases):
        v[i, 0, : case.numel()] = case
    scales = torch.tensor([[0.5, -2.0], [1.0, -1.0], [3e-4, -0.9], [2.0, 2.0], [-1.0, 0.25]])[: len(cases)]
    written_out = scales[:, :, None] * v  # (e, 2, m)
    kept, grams = _selected(kernels.Written.of_examples(v), n, scales)
    expected, expected_grams = _selected(kernels.Written.of_examples(written_out), n)
    for (position, values), (want_position, want_values) in zip(kept, expected):
        assert torch.equal(position, want_position) and torch.equal(values, want_values)
    torch.testing.assert_close(grams, expected_grams, rtol=1e-6, atol=0)


@needs_numba
@pytest.mark.parametrize("n", [100, 8192, None])
def test_compiled_selection_reads_blocks_as_the_rows_they_hold(n):
    """Gradients written block by block (each parameter's (k, e, numel) in a place of its own,
    a parameter no layer reached not written at all) select as the example-major rows do."""
    cases = list(_cases().values())
    k, m = 2, max(v.numel() for v in cases) // 2 + 1
    A = torch.zeros((len(cases), k, m))
    for i, v in enumerate(cases):
        A[i].view(-1)[: v.numel()] = v
    cuts = [0, 5, m // 3, m // 3 + 7, m // 2, m]  # block 3 (m//3+7 .. m//2) left unwritten: zeros
    A[:, :, cuts[3] : cuts[4]] = 0
    parts, table, at = [], [], 0
    for b, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        if b == 3:
            continue
        parts.append(A[:, :, lo:hi].transpose(0, 1).reshape(-1))  # (k, e, size)
        table.append([at, hi - lo, lo, hi - lo, len(cases) * (hi - lo)])
        at += k * len(cases) * (hi - lo)
    written = kernels.Written(torch.cat(parts).numpy(), np.array(table, dtype=np.int64), len(cases), k, m)
    kept, grams = _selected(written, n)
    expected, expected_grams = _selected(kernels.Written.of_examples(A), n)
    for (position, values), (want_position, want_values) in zip(kept, expected):
        assert torch.equal(position, want_position) and torch.equal(values, want_values)
    torch.testing.assert_close(grams, expected_grams, rtol=1e-12, atol=0)


@needs_numba
@pytest.mark.parametrize("n", [1, 100, None])
def test_compiled_selection_split_between_threads_keeps_what_one_thread_keeps(n, monkeypatch):
    """Examples split between threads: each thread's range is written without gaps, and the
    one entry the kernel writes past a range's end does not reach the next range's first."""
    cases = list(_cases().values())
    m = max(v.numel() for v in cases) // 2 + 1
    A = torch.zeros((len(cases), 2, m))
    for i, v in enumerate(cases):
        A[i].view(-1)[: v.numel()] = v
    monkeypatch.setattr(compiled, "n_threads", lambda: 1)
    one = kernels.top_entries_of_written(kernels.Written.of_examples(A), n)
    monkeypatch.setattr(compiled, "n_threads", lambda: 2)
    two = kernels.top_entries_of_written(kernels.Written.of_examples(A), n)
    assert two.starts[-1] > one.starts[-1]  # the second range starts further on
    for got, want in zip(two.csr(), one.csr()):
        np.testing.assert_array_equal(got, want)
    torch.testing.assert_close(two.grams, one.grams, rtol=0, atol=0)

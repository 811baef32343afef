import time
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from torchlc_geo import (
    ConnectivityWarning,
    build_connectivity,
    candidate_offsets,
    connectivity_stats,
    connectivity_to_edges,
    edges_to_connectivity,
    local_offsets,
    resample_connectivity,
    reverse_connectivity,
)


def _coords(idx, w):
    return idx.to(torch.int64) // w, idx.to(torch.int64) % w


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8, 9, 12, 16, 24, 25, 32, 48])
def test_local_default_is_point_symmetric_and_distinct(k):
    off = local_offsets(k)
    assert off.shape == (k, 2)
    assert torch.unique(off, dim=0).shape[0] == k
    # closed under negation → zero mean offset (no drift through depth)
    s = {tuple(o) for o in off.tolist()}
    assert all((-a, -b) in s for a, b in s)
    assert off.sum(0).tolist() == [0, 0]
    # nearest first (within the Chebyshev window): chosen offsets lie within the k+1 nearest's distance
    d2 = (off * off).sum(1)
    window = (candidate_offsets(int(off.abs().max()), True) ** 2).sum(1).sort().values
    assert int(d2.max()) <= int(window[min(k, window.numel() - 1)])


def test_local_k8_is_full_ring_and_k9_full_window():
    assert sorted(map(tuple, local_offsets(8).tolist())) == sorted(
        (a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0))
    assert sorted(map(tuple, local_offsets(9).tolist())) == sorted(
        (a, b) for a in (-1, 0, 1) for b in (-1, 0, 1))


def test_forced_self_with_even_k_warns_asymmetric():
    with pytest.warns(ConnectivityWarning, match="point-symmetric"):
        off = local_offsets(8, include_self=True)
    assert off.sum(0).tolist() != [0, 0]


def test_local_interior_neuron_reads_its_window():
    H, W = 7, 9
    idx = build_connectivity((H, W), 8)
    o = 3 * W + 4
    r, c = _coords(idx[o], W)
    assert sorted(zip(r.tolist(), c.tolist())) == sorted(
        (3 + a, 4 + b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0))


@pytest.mark.parametrize("pattern", ["local", "random", "hash"])
@pytest.mark.parametrize("wrap_mode", ["clamp", "wrap", "shift"])
def test_shape_dtype_range_and_determinism(pattern, wrap_mode):
    a = build_connectivity((6, 5), 8, pattern, wrap_mode=wrap_mode, seed=11)
    b = build_connectivity((6, 5), 8, pattern, wrap_mode=wrap_mode, seed=11)
    assert a.dtype == torch.int32 and a.shape == (30, 8)
    assert torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) < 30


@given(H=st.integers(3, 12), W=st.integers(3, 12), k=st.integers(1, 9),
       pattern=st.sampled_from(["local", "random", "hash"]), seed=st.integers(0, 2**31 - 1))
def test_picks_stay_in_window_and_are_distinct_under_wrap(H, W, k, pattern, seed):
    idx = build_connectivity((H, W), k, pattern, radius=1, wrap_mode="wrap", seed=seed,
                             include_self=None if pattern == "local" else True)
    r, c = _coords(idx, W)
    o = torch.arange(H * W)
    dr = (r - (o // W)[:, None]) % H
    dc = (c - (o % W)[:, None]) % W
    # periodic distance ≤ 1 in both axes
    assert bool(((dr <= 1) | (dr >= H - 1)).all()) and bool(((dc <= 1) | (dc >= W - 1)).all())
    s = connectivity_stats(idx, H * W)
    assert s["min_distinct"] == k


def test_shift_mode_gives_k_distinct_inputs_everywhere():
    idx = build_connectivity((5, 5), 9, wrap_mode="shift")
    assert connectivity_stats(idx)["min_distinct"] == 9
    idx = build_connectivity((5, 5), 9)  # clamp: corner sees repeats
    assert connectivity_stats(idx)["min_distinct"] == 4


def test_seeds_change_random_and_hash_picks():
    for pat in ("random", "hash"):
        a = build_connectivity((16, 16), 4, pat, radius=2, seed=0)
        b = build_connectivity((16, 16), 4, pat, radius=2, seed=1)
        assert not torch.equal(a, b)


def test_hash_is_per_output_independent_of_grid_extent():
    # the hash of (seed, neuron, candidate) does not depend on how many neurons follow
    a = build_connectivity((4, 8), 4, "hash", radius=2, seed=5)
    b = build_connectivity((8, 8), 4, "hash", radius=2, seed=5)
    assert torch.equal(a[:8], b[:8])  # first row: same picks (same centres, same offsets)


def test_k_larger_than_candidates_errors_or_warns():
    with pytest.raises(ValueError, match="exceeds"):
        build_connectivity((8, 8), 16, radius=1)
    with pytest.raises(ValueError, match="exceeds"):
        build_connectivity((8, 8), 16, "random", radius=1)
    with pytest.raises(ValueError, match="exceeds"):
        build_connectivity((8, 8), 4, offsets=[(0, 1), (1, 0)])
    with pytest.warns(ConnectivityWarning, match="repeated"):
        idx = build_connectivity((8, 8), 16, "hash", radius=1, allow_repeats=True)
    assert idx.shape == (64, 16)
    # auto radius makes the fan-in real
    idx = build_connectivity((8, 8), 16, "random", wrap_mode="wrap")
    assert connectivity_stats(idx)["min_distinct"] == 16


def test_wrap_aliasing_warns():
    with pytest.warns(ConnectivityWarning, match="aliases"):
        build_connectivity((2, 2), 8, wrap_mode="wrap")


def test_explicit_offsets_order_is_kept():
    offs = [(0, 1), (1, 0), (0, -1)]
    idx = build_connectivity((4, 4), 3, offsets=offs, wrap_mode="wrap")
    assert idx[5].tolist() == [6, 9, 4]


def test_resampling_maps_centres():
    idx = resample_connectivity((8, 8), (4, 4), k=1, include_self=True)
    # output (i, j) centre = (2i+1, 2j+1) of the 8x8 input
    expect = [(2 * i + 1) * 8 + (2 * j + 1) for i in range(4) for j in range(4)]
    assert idx[:, 0].tolist() == expect
    up = resample_connectivity((2, 2), (4, 4), k=1, include_self=True)
    assert up[:, 0].tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]


def test_edges_roundtrip_and_fixed_fanin_check():
    idx = build_connectivity((5, 7), 4, "hash", seed=2)
    src, dst = connectivity_to_edges(idx)
    assert src.dtype == torch.int32 and src.numel() == 35 * 4
    perm = torch.randperm(src.numel(), generator=torch.Generator().manual_seed(0))
    back = edges_to_connectivity(src[perm], dst[perm], 35)
    assert sorted(map(tuple, back.sort(1).values.tolist())) == sorted(map(tuple, idx.sort(1).values.tolist()))
    with pytest.raises(ValueError, match="fixed"):
        edges_to_connectivity(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]))


def test_reverse_table_matches_edges():
    idx = build_connectivity((6, 6), 8, "random", radius=2, seed=3)
    ro, re = reverse_connectivity(idx, 36)
    k = idx.shape[1]
    for i in (0, 7, 35):
        e = re[i][re[i] >= 0].to(torch.int64)
        assert bool((idx.reshape(-1)[e] == i).all())
        assert torch.equal(ro[i][re[i] >= 0].to(torch.int64), e // k)
    assert int((re >= 0).sum()) == idx.numel()


def test_million_neurons_local_is_fast():
    # vectorised builder: 10^6 neurons; generous bound (shared CI machines), typical < 0.2 s
    t = time.perf_counter()
    idx = build_connectivity((1000, 1000), 8)
    assert time.perf_counter() - t < 2.0
    assert idx.shape == (10**6, 8) and idx.dtype == torch.int32


def test_no_warning_for_default_configs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in (4, 8, 9, 16, 32):
            build_connectivity((16, 16), k)
            build_connectivity((16, 16), k, "hash")

"""Reciprocal rank fusion on constructed rankings, checked against hand-computed values."""

import pytest

from verticalize.kb import rrf_fuse


def test_rrf_matches_hand_computed_scores():
    fused = rrf_fuse([["a", "b", "c"], ["b", "c", "d"]], k=60)
    # a: 1/61; b: 1/62 + 1/61; c: 1/63 + 1/62; d: 1/63
    expected = [("b", 1 / 62 + 1 / 61), ("c", 1 / 63 + 1 / 62), ("a", 1 / 61), ("d", 1 / 63)]
    assert [i for i, _ in fused] == [i for i, _ in expected]
    for (_, got), (_, want) in zip(fused, expected):
        assert got == pytest.approx(want, rel=1e-12)


def test_agreement_beats_a_single_first_place_and_small_k_sharpens_the_top():
    # "x" is first in one list only; "y" is second in both.
    assert rrf_fuse([["x", "y"], ["z", "y"]], k=60)[0][0] == "y"
    # With k=1 the top ranks dominate: x = 1/2, y = 1/3 + 1/3 = 0.667 -> y still wins, with exact values.
    fused = dict(rrf_fuse([["x", "y"], ["z", "y"]], k=1))
    assert fused == pytest.approx({"x": 0.5, "y": 2 / 3, "z": 0.5})


def test_ties_keep_first_appearance_and_bad_k_is_refused():
    assert [i for i, _ in rrf_fuse([["p"], ["q"]], k=60)] == ["p", "q"]
    assert rrf_fuse([], k=60) == []
    with pytest.raises(ValueError, match="rrf k must be >= 1"):
        rrf_fuse([["a"]], k=0)

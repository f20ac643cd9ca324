"""ROC-AUC against examples worked out by hand."""

import numpy as np
import pytest
from toxic_service.auc import average_ranks, roc_auc


def test_hand_computed_example_with_a_tie():
    # Positives score 0.8, 0.4, 0.35; negatives 0.1, 0.4, 0.7.
    # Pairs (pos > neg count 1, tie 1/2): 0.8 beats all three -> 3;
    # 0.4 beats 0.1, ties 0.4, loses to 0.7 -> 1.5; 0.35 beats 0.1 -> 1.
    # AUC = (3 + 1.5 + 1) / 9 = 5.5 / 9.
    y = [1, 0, 1, 0, 1, 0]
    s = [0.8, 0.1, 0.4, 0.4, 0.35, 0.7]
    assert roc_auc(y, s) == pytest.approx(5.5 / 9)


def test_perfect_reversed_and_constant_scores():
    y = [0, 0, 1, 1]
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_ties_get_the_average_rank():
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_matches_pairwise_definition_on_random_data():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 20, 300) / 20.0  # many ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert roc_auc(y, s) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("y", "s"),
    [([1, 1], [0.1, 0.2]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1]), ([0, 1], [0.1, float("nan")])],
)
def test_refuses_undefined_or_malformed_input(y, s):
    with pytest.raises(ValueError):
        roc_auc(y, s)

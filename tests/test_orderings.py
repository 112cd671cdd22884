"""The four fixed label orderings on a hand-made example (exact sequences)."""

import numpy as np
import pytest

from labelchain.envs.orderings import ORDERINGS, LabelOrdering, frequency_rank, order_labels

# label:        0  1  2  3  4   (1 and 2 tie: the lower id goes first in both directions)
LABEL_FREQ = np.array([5, 9, 9, 1, 3])
DOCS = [np.array([0, 1, 2]), np.array([3, 4]), np.array([], dtype=np.int64), np.array([2, 4, 0])]


def as_lists(sequences):
    return [s.tolist() for s in sequences]


def test_frequency_rank_breaks_ties_by_label_id():
    assert frequency_rank(LABEL_FREQ, descending=True).tolist() == [2, 0, 1, 4, 3]
    assert frequency_rank(LABEL_FREQ, descending=False).tolist() == [2, 3, 4, 0, 1]


def test_freq2rare_exact():
    ordered = order_labels(DOCS, "freq2rare", LABEL_FREQ)
    assert as_lists(ordered) == [[1, 2, 0], [4, 3], [], [2, 0, 4]]


def test_rare2freq_exact():
    ordered = LabelOrdering("rare2freq", LABEL_FREQ).order(DOCS)
    assert as_lists(ordered) == [[0, 1, 2], [3, 4], [], [4, 0, 2]]


def test_fixed_random_is_one_permutation_for_the_whole_run():
    freq = np.ones(20, dtype=np.int64)
    docs = [np.arange(20), np.array([5, 3, 17, 0]), np.array([19, 1])]
    ordering = LabelOrdering("fixed_random", freq, seed=3)
    first, second = ordering.order(docs), ordering.order(docs)
    assert as_lists(first) == as_lists(second)
    permutation = first[0]
    assert sorted(permutation.tolist()) == list(range(20))
    position = {label: i for i, label in enumerate(permutation.tolist())}
    for doc in first[1:]:  # every document follows the same global permutation
        assert [position[x] for x in doc.tolist()] == sorted(position[x] for x in doc.tolist())
    other = LabelOrdering("fixed_random", freq, seed=4).order(docs)
    assert other[0].tolist() != permutation.tolist()
    assert as_lists(LabelOrdering("fixed_random", freq, seed=3).order(docs)) == as_lists(first)


def test_always_random_reshuffles_every_call_but_is_seeded():
    docs = [np.arange(8) for _ in range(5)]
    ordering = LabelOrdering("always_random", np.ones(8, dtype=np.int64), seed=0)
    first, second = ordering.order(docs), ordering.order(docs)
    assert all(sorted(s.tolist()) == list(range(8)) for s in first + second)
    assert len({tuple(s.tolist()) for s in first}) > 1  # fresh shuffle per document
    assert as_lists(first) != as_lists(second)  # and per call
    replay = LabelOrdering("always_random", np.ones(8, dtype=np.int64), seed=0)
    assert as_lists(replay.order(docs)) == as_lists(first)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="ordering must be one of"):
        LabelOrdering("alphabetical", LABEL_FREQ)
    with pytest.raises(ValueError, match=r"label ids must lie in \[0, 5\)"):
        LabelOrdering("freq2rare", LABEL_FREQ).order([np.array([0, 5])])
    with pytest.raises(ValueError, match="needs label_freq"):
        order_labels(DOCS, "freq2rare")
    assert set(ORDERINGS) == {"freq2rare", "rare2freq", "fixed_random", "always_random"}

"""Golden values for the few-shot buckets (XLGen's micro/macro F1 over labels by training count)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.tail_metrics import FEW_SHOT_BUCKETS, few_shot_f1, few_shot_labels

FREQ = np.array([0, 0, 1, 3, 8, 20])  # training documents per label
GOLD = np.array(
    [
        [1, 0, 1, 0, 0, 0],  # {0, 2}
        [1, 0, 0, 1, 0, 1],  # {0, 3, 5}
        [0, 0, 0, 0, 1, 0],  # {4}
        [0, 0, 1, 0, 0, 1],  # {2, 5}
    ]
)
PRED = np.array(
    [
        [1, 1, 0, 0, 0, 0],  # {0, 1}: label 1 is never gold in test
        [0, 0, 0, 1, 1, 0],  # {3, 4}
        [0, 0, 0, 0, 1, 0],  # {4}
        [0, 0, 0, 0, 0, 1],  # {5}
    ]
)
# Per label (tp, |pred|, |gold|): 0 (1,1,2) F1 2/3; 1 (0,1,0) 0; 2 (0,0,2) 0; 3 (1,1,1) 1;
# 4 (1,2,1) 2/3; 5 (1,1,2) 2/3.


def test_bucket_membership():
    assert few_shot_labels(GOLD, FREQ, 0).tolist() == [0]  # label 1 is unseen in train but not in test
    assert few_shot_labels(GOLD, FREQ, 1).tolist() == [2]
    assert few_shot_labels(GOLD, FREQ, 3).tolist() == [2, 3]
    assert few_shot_labels(GOLD, FREQ, 5).tolist() == [2, 3]
    assert few_shot_labels(GOLD, FREQ, 10).tolist() == [2, 3, 4]


def test_golden_values():
    got = few_shot_f1(GOLD, PRED, FREQ)
    expected = {
        "0shot_micro_f1": 2 * 1 / (1 + 2),  # label 0 only (label 1's false positive does not count)
        "0shot_macro_f1": 2 / 3,
        "0shot_labels": 1.0,
        "1shot_micro_f1": 0.0,  # label 2: two gold, never predicted
        "1shot_macro_f1": 0.0,
        "1shot_labels": 1.0,
        "5shot_micro_f1": 2 * 1 / (0 + 1 + 2 + 1),  # labels 2, 3
        "5shot_macro_f1": (0 + 1) / 2,
        "5shot_labels": 2.0,
        "10shot_micro_f1": 2 * 2 / (3 + 4),  # labels 2, 3, 4: tp 0+1+1, pred 0+1+2, gold 2+1+1
        "10shot_macro_f1": (0 + 1 + 2 / 3) / 3,
        "10shot_labels": 3.0,
    }
    assert list(got) == list(expected)
    assert got == pytest.approx(expected)
    assert [int(key.split("shot")[0]) for key in got][::3] == list(FEW_SHOT_BUCKETS)
    assert few_shot_f1(sp.csr_matrix(GOLD), sp.csr_matrix(PRED), FREQ) == pytest.approx(expected)


def test_custom_and_empty_buckets():
    got = few_shot_f1(GOLD, PRED, FREQ + 1, buckets=(0, 3))  # every label now seen in training
    assert math.isnan(got["0shot_micro_f1"]) and math.isnan(got["0shot_macro_f1"])
    assert got["0shot_labels"] == 0.0
    # 3-shot = training counts 1..3 = labels 0, 1 (counts 1, 1) and 2 (count 2).
    assert got["3shot_micro_f1"] == pytest.approx(2 * 1 / (2 + 4))
    assert got["3shot_macro_f1"] == pytest.approx((2 / 3 + 0 + 0) / 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="shots"):
        few_shot_labels(GOLD, FREQ, -1)
    with pytest.raises(ValueError, match="label_freq"):
        few_shot_f1(GOLD, PRED, FREQ[:5])
    with pytest.raises(ValueError, match="Y_pred"):
        few_shot_f1(GOLD, PRED[:3], FREQ)

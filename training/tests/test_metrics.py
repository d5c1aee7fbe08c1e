import math

import numpy as np
import pytest

from liveprofile_training import metrics


def test_ece_hand_computed():
    # 15 bins of width 1/15. Bins used: 1 (0.10, 0.12), 7 (0.50, 0.52), 13 (0.90), 14 (0.98).
    # |gaps|: bin 1 |0.5 - 0.11| = 0.39, bin 7 |0.5 - 0.51| = 0.01, bin 13 0.10, bin 14 0.02.
    # ECE = (2 * 0.39 + 2 * 0.01 + 0.10 + 0.02) / 6 = 0.92 / 6
    y = [0, 1, 1, 0, 1, 1]
    p = [0.10, 0.12, 0.50, 0.52, 0.90, 0.98]
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.92 / 6, abs=1e-12)
    table = metrics.reliability_table(y, p)
    assert len(table) == 15
    assert [r.count for r in table] == [0, 2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 1]
    assert table[1].mean_predicted == pytest.approx(0.11)
    assert table[1].observed_rate == 0.5
    assert math.isnan(table[0].mean_predicted)


def test_ece_perfect_and_worst():
    assert metrics.expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    assert metrics.expected_calibration_error([1, 0], [0.0, 1.0]) == 1.0


def test_bin_edges():
    # closed on the left, the last bin also holds 1.0
    assert metrics.bin_index(np.array([0.0, 0.0666, 0.07, 0.999, 1.0])).tolist() == [0, 0, 1, 14, 14]


def test_roc_auc_hand_computed():
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_log_loss_hand_computed():
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert metrics.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(expected, rel=1e-12)


def test_matches_scikit_learn():
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(3)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p).astype(int)
    p[:50] = np.round(p[:50], 1)  # some ties
    assert metrics.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert metrics.log_loss(y, p) == pytest.approx(log_loss(y, p), abs=1e-6)


def test_report_and_bad_input():
    rep = metrics.binary_report([0, 1, 1, 0], [0.2, 0.7, 0.6, 0.1])
    assert set(rep) >= {"roc_auc", "log_loss", "ece", "ece_bins", "rows"} and rep["ece_bins"] == 15
    with pytest.raises(ValueError):
        metrics.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        metrics.log_loss([0, 1], [0.1, 1.2])


def test_multi_label_report_is_flat():
    Y = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    P = np.array([[0.1, 0.8], [0.9, 0.3], [0.7, 0.6], [0.2, 0.1]])
    rep = metrics.multi_label_report(Y, P, ["a", "b"])
    assert rep["roc_auc.a"] == 1.0 and rep["roc_auc_macro"] == 1.0
    assert all(isinstance(v, (int, float)) for v in rep.values())

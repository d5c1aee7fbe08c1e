"""Held-out metrics: ROC AUC, log loss, expected calibration error, reliability table.

Calibration uses ``ECE_BINS`` = 15 equal-width bins over [0, 1]. A probability p falls in
bin ``min(floor(p * 15), 14)``: bins are closed on the left and open on the right, except
the last, which also holds p = 1. ECE is the sum over non-empty bins of
``count / n * |observed positive rate - mean predicted probability|``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

ECE_BINS = 15
LOG_LOSS_EPS = 1e-7


def _as_1d(y_true: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    q = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != q.shape:
        raise ValueError(f"labels {y.shape} and probabilities {q.shape} differ in length")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if ((q < 0) | (q > 1) | ~np.isfinite(q)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return y, q


def roc_auc(y_true: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN if one class is absent."""
    y, q = _as_1d(y_true, p)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Mann-Whitney U with average ranks for ties.
    ranks = rankdata(q, method="average")
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(y_true: np.ndarray, p: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to [eps, 1 - eps]."""
    y, q = _as_1d(y_true, p)
    q = np.clip(q, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def bin_index(p: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin of each probability under the rule in the module docstring."""
    q = np.asarray(p, dtype=np.float64).reshape(-1)
    return np.minimum(np.floor(q * n_bins).astype(np.int64), n_bins - 1)


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_predicted: float
    observed_rate: float

    @property
    def gap(self) -> float:
        return abs(self.observed_rate - self.mean_predicted)


def reliability_table(
    y_true: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS
) -> list[ReliabilityBin]:
    """One row per bin (empty bins too, with NaN means)."""
    y, q = _as_1d(y_true, p)
    idx = bin_index(q, n_bins)
    rows = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        rows.append(
            ReliabilityBin(
                lower=b / n_bins,
                upper=(b + 1) / n_bins,
                count=n,
                mean_predicted=float(q[mask].mean()) if n else float("nan"),
                observed_rate=float(y[mask].mean()) if n else float("nan"),
            )
        )
    return rows


def expected_calibration_error(
    y_true: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    y, _ = _as_1d(y_true, p)
    total = y.size
    if total == 0:
        return float("nan")
    return float(
        sum(r.count / total * r.gap for r in reliability_table(y_true, p, n_bins) if r.count)
    )


def binary_report(y_true: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, float]:
    """Scalar metrics for one binary output, as stored in a manifest."""
    y, q = _as_1d(y_true, p)
    return {
        "roc_auc": roc_auc(y, q),
        "log_loss": log_loss(y, q),
        "ece": expected_calibration_error(y, q, n_bins),
        "ece_bins": n_bins,
        "rows": int(y.size),
        "positive_rate": float(y.mean()) if y.size else float("nan"),
        "mean_predicted": float(q.mean()) if q.size else float("nan"),
    }


def multi_label_report(
    Y: np.ndarray, P: np.ndarray, names: Sequence[str], n_bins: int = ECE_BINS
) -> dict[str, float]:
    """Macro averages plus one ``<metric>.<label>`` entry per label (all scalars)."""
    Y = np.asarray(Y)
    P = np.asarray(P)
    if Y.shape != P.shape or Y.ndim != 2 or Y.shape[1] != len(names):
        raise ValueError(f"labels {Y.shape}, probabilities {P.shape} and {len(names)} names disagree")
    out: dict[str, float] = {}
    per = {name: binary_report(Y[:, k], P[:, k], n_bins) for k, name in enumerate(names)}
    for metric in ("roc_auc", "log_loss", "ece"):
        vals = [r[metric] for r in per.values() if np.isfinite(r[metric])]
        out[f"{metric}_macro"] = float(np.mean(vals)) if vals else float("nan")
    out["ece_bins"] = n_bins
    out["rows"] = int(Y.shape[0])
    for name, r in per.items():
        for metric in ("roc_auc", "log_loss", "ece", "positive_rate"):
            out[f"{metric}.{name}"] = r[metric]
    return out


def format_table(reports: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = ("roc_auc", "log_loss", "ece")) -> str:
    """A plain-text comparison table, one row per model."""
    width = max(len(k) for k in reports) if reports else 5
    head = f"{'model':<{width}}  " + "  ".join(f"{m:>9}" for m in metrics)
    lines = [head, "-" * len(head)]
    for name, rep in reports.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{rep[m]:>9.4f}" for m in metrics))
    return "\n".join(lines)


def format_reliability(rows: Sequence[ReliabilityBin]) -> str:
    lines = ["bin            count  mean_pred  observed"]
    for r in rows:
        if r.count:
            lines.append(
                f"[{r.lower:.3f},{r.upper:.3f})  {r.count:>5}  {r.mean_predicted:>9.4f}  {r.observed_rate:>8.4f}"
            )
        else:
            lines.append(f"[{r.lower:.3f},{r.upper:.3f})  {0:>5}          -         -")
    return "\n".join(lines)


def report(Y: np.ndarray, P: np.ndarray, names: Sequence[str], n_bins: int = ECE_BINS) -> dict[str, float]:
    """:func:`binary_report` for one output column, :func:`multi_label_report` for several."""
    Y = np.asarray(Y).reshape(len(Y), -1)
    P = np.asarray(P).reshape(len(P), -1)
    if Y.shape[1] == 1:
        return binary_report(Y[:, 0], P[:, 0], n_bins)
    return multi_label_report(Y, P, names, n_bins)

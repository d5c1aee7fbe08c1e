"""Platt scaling: p = sigmoid(a * logit + b), fitted on a calibration split.

The fitted (a, b) are folded into the last Dense of a lean model
(:func:`liveprofile_training.model.fold_for_serving`), so the exported graph returns
calibrated probabilities with no extra node.
"""

from __future__ import annotations

import numpy as np


def fit_platt(logits: np.ndarray, y: np.ndarray, *, l2: float = 0.0) -> tuple[float, float]:
    """(a, b) minimising the mean log loss of sigmoid(a * logit + b) (Newton's method).

    ``l2`` optionally pulls (a, b) towards (1, 0).
    """
    s = np.asarray(logits, dtype=np.float64).reshape(-1)
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    if s.shape != t.shape or s.size == 0:
        raise ValueError(f"logits {s.shape} and labels {t.shape}")
    if t.min() == t.max():
        raise ValueError("calibration needs both classes")
    theta = np.array([1.0, 0.0])
    prior = np.array([1.0, 0.0])
    X = np.column_stack([s, np.ones_like(s)])

    def loss(th):
        z = X @ th
        return float(np.mean(np.logaddexp(0.0, z) - t * z) + 0.5 * l2 * np.sum((th - prior) ** 2))

    current = loss(theta)
    for _ in range(100):
        z = X @ theta
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        grad = X.T @ (p - t) / s.size + l2 * (theta - prior)
        w = p * (1.0 - p)
        hess = (X * w[:, None]).T @ X / s.size + (l2 + 1e-12) * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-8:
            trial = theta - scale * step
            value = loss(trial)
            if value <= current:
                break
            scale *= 0.5
        if scale <= 1e-8:
            break
        theta, previous, current = trial, current, value
        if previous - current < 1e-13 and np.max(np.abs(scale * step)) < 1e-9:
            break
    return float(theta[0]), float(theta[1])


def fit_platt_columns(logits: np.ndarray, Y: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fit_platt` per output column; returns (a, b) vectors."""
    S = np.asarray(logits).reshape(len(logits), -1)
    Y = np.asarray(Y).reshape(len(Y), -1)
    pairs = [fit_platt(S[:, k], Y[:, k], **kw) for k in range(S.shape[1])]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def apply_platt(logits: np.ndarray, a, b) -> np.ndarray:
    z = np.asarray(a, dtype=np.float64) * np.asarray(logits, dtype=np.float64) + np.asarray(b, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))

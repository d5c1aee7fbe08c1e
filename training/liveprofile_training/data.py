"""Paths and splits shared by the notebooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRAINING_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = TRAINING_DIR.parent


def resolve(path: str | Path) -> Path:
    """A path relative to the repository root (absolute paths are kept)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


def stratified_split(
    y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of row indices (stratified on the label combination)."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    strata = y if y.ndim == 1 else _combination_key(y)
    idx = np.arange(len(y))
    train, test = train_test_split(
        idx, test_size=test_fraction, stratify=strata, random_state=seed
    )
    return np.sort(train), np.sort(test)


def _combination_key(Y: np.ndarray) -> np.ndarray:
    """One stratum per label combination; rare combinations (< 2 rows) are pooled."""
    keys = np.array(["".join(map(str, row)) for row in Y.astype(np.int64)])
    values, counts = np.unique(keys, return_counts=True)
    rare = set(values[counts < 2])
    return np.array(["rare" if k in rare else k for k in keys])

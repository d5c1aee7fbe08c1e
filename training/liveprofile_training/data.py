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


def user_buckets(ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """A uniform number in [0, 1) per row, fixed by (seed, id): rows of one user share it.

    Splits by user take ranges of it (e.g. test = bucket < 0.2), so a user falls on the
    same side in every table keyed by that id, whatever the row order or subsampling.
    The number is the first 8 bytes of SHA-256 of ``"<seed>:<id>"`` over 2**64.
    """
    import hashlib

    ids = np.asarray(ids)
    uniq, inverse = np.unique(ids, return_inverse=True)
    values = np.empty(len(uniq), dtype=np.float64)
    for i, uid in enumerate(uniq):
        digest = hashlib.sha256(f"{seed}:{uid}".encode("utf-8")).digest()
        values[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return values[inverse.reshape(-1)]


def user_split(
    ids: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row indices by user: all rows of a user on one side."""
    bucket = user_buckets(ids, seed)
    test = bucket < test_fraction
    return np.flatnonzero(~test), np.flatnonzero(test)

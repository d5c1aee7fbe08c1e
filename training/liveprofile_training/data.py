"""Paths and splits shared by the notebooks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

TRAINING_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = TRAINING_DIR.parent

# The real data sets of full training live outside the repository, in a folder named by
# $LIVEPROFILE_DATASETS (relative paths from the repository root), by default
# ../shared/datasets beside the repository. training/datasets/README.md says where to get
# each file. The tests use only files in the repository (BUNDLED_*, SYNTHETIC_*).
DATASETS_ENV = "LIVEPROFILE_DATASETS"
DEFAULT_DATASETS = "../shared/datasets"
UCI_CSV = "uci-online-shoppers/online_shoppers_intention.csv"
TAOBAO_CSV = "taobao-userbehavior/UserBehavior.csv"
BUNDLED_DATASETS = TRAINING_DIR / "datasets"
BUNDLED_UCI_CSV = BUNDLED_DATASETS / UCI_CSV  # a copy of the real file (CC BY 4.0)
SYNTHETIC_TAOBAO_CSV = BUNDLED_DATASETS / "taobao-synthetic" / "UserBehavior.synthetic.csv"  # made up, for tests

_WHERE_TO_GET = {
    UCI_CSV: (
        "the UCI Machine Learning Repository, Online Shoppers Purchasing Intention Dataset (id 468, CC BY 4.0): "
        "https://archive.ics.uci.edu/dataset/468/online+shoppers+purchasing+intention+dataset; "
        f"an identical copy ships in the repository as {BUNDLED_UCI_CSV.relative_to(REPO_ROOT)}"
    ),
    TAOBAO_CSV: (
        "Alibaba Tianchi, User Behavior Data from Taobao for Recommendation (dataset 649, research use with "
        "citation): https://tianchi.aliyun.com/dataset/649; it is not in the repository"
    ),
}


class DatasetMissing(FileNotFoundError):
    """A real data set that full training needs is not where it should be."""


def resolve(path: str | Path) -> Path:
    """A path relative to the repository root (absolute paths are kept)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


def datasets_dir() -> Path:
    """The folder of the real data sets: $LIVEPROFILE_DATASETS, else ../shared/datasets."""
    return resolve(os.environ.get(DATASETS_ENV) or DEFAULT_DATASETS)


def dataset_file(relative: str) -> Path:
    """A file of the real data sets, e.g. ``dataset_file(UCI_CSV)``.

    Raises :class:`DatasetMissing` naming the file, the folder searched, how that folder
    is chosen and where to get the data.
    """
    folder = datasets_dir()
    path = folder / relative
    if path.is_file():
        return path
    origin = (
        f"${DATASETS_ENV}={os.environ[DATASETS_ENV]}" if os.environ.get(DATASETS_ENV)
        else f"${DATASETS_ENV} unset: default {DEFAULT_DATASETS} beside the repository"
    )
    source = _WHERE_TO_GET.get(relative, "see training/datasets/README.md")
    raise DatasetMissing(
        f"data set file not found: {path}\n"
        f"  the real data sets are read from {folder} ({origin});\n"
        f"  put {relative} there, or set {DATASETS_ENV} to the folder that holds it.\n"
        f"  Get it from {source}. See training/datasets/README.md."
    )


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

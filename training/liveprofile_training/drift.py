"""Drift references of the bundled packages: the rows each notebook fitted its model on,
written to Parquet and handed to ``liveprofile drift reference`` (one Rust implementation
of the binning; the CLI scores the rows with the package for the output histograms and
names the reference, with its sha256, in the manifest).

    python -m liveprofile_training.drift [--data training/data] [--models models] [--bin target/release/liveprofile]

The data folder is the output of ``training/make_data.sh`` (full mode); the splits repeat
the notebooks' (seed 7):

- ``conversion``: conversion examples of users whose bucket is in [0.30, 0.65) (the fit
  split of the notebook's 65% of users);
- ``user_tags``: users with bucket >= 0.3 (fit split);
- ``user_segments``: every user's 13 tag probabilities from ``user_tags`` version 1 (the
  k-means ran on all of them);
- ``uci_session_conversion``: the fit rows of the stratified split of the deduplicated
  UCI sessions;
- ``taobao_purchase``: every user of the Taobao table (the notebook cross-validates on
  all of them and fits the published model on all of them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import data
from .schema import encode_frame, load_schema, table_from_frame

SEED = 7


def _bucket(ids: np.ndarray) -> np.ndarray:
    return data.user_buckets(ids, SEED)


def _rows_where(path: Path, keep) -> pa.Table:
    table = pq.ParquetFile(path).read()
    ids = table.column("user_id").to_numpy(zero_copy_only=False)
    return table.filter(pa.array(keep(_bucket(ids))))


def _features_only(table: pa.Table, schema_file: Path) -> pa.Table:
    """The schema's feature columns (a feature named like an id column, e.g. the
    conversion table's ``platform``, is the later, numeric one)."""
    names = table.column_names
    features = load_schema(schema_file).feature_names
    index = {name: max(i for i, n in enumerate(names) if n == name) for name in features}
    return pa.table({name: table.column(index[name]) for name in features})


def conversion_rows(data_dir: Path, models: Path) -> tuple[pa.Table, str]:
    t = _rows_where(data_dir / "sim" / "conversion.parquet", lambda b: (b >= 0.30) & (b < 0.65))
    t = _features_only(t, models / "conversion" / "1" / "feature_schema.json")
    return t, f"conversion examples of sim/conversion.parquet (make_data.sh, seed 7) of users with bucket in [0.30, 0.65): the notebook's fit split, {t.num_rows} rows"


def user_tags_rows(data_dir: Path, models: Path) -> tuple[pa.Table, str]:
    t = _rows_where(data_dir / "sim" / "users.parquet", lambda b: b >= 0.3)
    return t, f"users of sim/users.parquet (make_data.sh, seed 7) with bucket >= 0.3: the notebook's fit split, {t.num_rows} rows"


def user_segments_rows(data_dir: Path, models: Path, binary: str, work: Path) -> tuple[pa.Table, str]:
    scores = work / "tag_scores.parquet"
    subprocess.run(
        [binary, "score", "--model", "user_tags@1", "--models", str(models), "--input",
         str(data_dir / "sim" / "users.parquet"), "--output", str(scores), "--overwrite"],
        check=True,
    )
    t = pq.read_table(scores)
    return t, f"tag probabilities from user_tags v1 of every user of sim/users.parquet (the k-means input), {t.num_rows} rows"


def uci_rows(data_dir: Path, models: Path) -> tuple[pa.Table, str]:
    import pandas as pd

    schema = load_schema(models / "uci_session_conversion" / "1" / "feature_schema.json")
    sessions = pd.read_csv(data.dataset_file(data.UCI_CSV)).drop_duplicates()
    table = table_from_frame(encode_frame(sessions, schema), schema, id_column=None)
    y = table.y[:, 0]
    train_idx, _ = data.stratified_split(y, 0.2, SEED)
    fit_pos, _ = data.stratified_split(y[train_idx], 0.1, SEED)
    fit_idx = train_idx[fit_pos]
    X = table.X[fit_idx]
    t = pa.table({name: pa.array(X[:, j], pa.float32()) for j, name in enumerate(schema.feature_names)})
    return t, f"fit rows of the UCI online shoppers sessions (duplicates dropped, stratified split seed 7), {t.num_rows} rows"


def taobao_rows(data_dir: Path, models: Path) -> tuple[pa.Table, str]:
    t = pq.read_table(data_dir / "taobao" / "users.parquet")
    return t, f"every user of taobao/users.parquet (features as of 2017-12-02, make_data.sh), {t.num_rows} rows"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="training/data")
    p.add_argument("--models", default="models")
    p.add_argument("--bin", default="target/release/liveprofile")
    p.add_argument("--only", nargs="*")
    a = p.parse_args(argv)
    data_dir, models = data.resolve(a.data), data.resolve(a.models)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        makers = {
            "uci_session_conversion": lambda: uci_rows(data_dir, models),
            "taobao_purchase": lambda: taobao_rows(data_dir, models),
            "user_tags": lambda: user_tags_rows(data_dir, models),
            "conversion": lambda: conversion_rows(data_dir, models),
            "user_segments": lambda: user_segments_rows(data_dir, models, a.bin, work),
        }
        for name, make in makers.items():
            if a.only and name not in a.only:
                continue
            table, description = make()
            path = work / f"{name}.parquet"
            pq.write_table(table, path)
            subprocess.run(
                [a.bin, "drift", "reference", "--model", str(models / name / "1"), "--table", str(path),
                 "--description", description],
                check=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared by the benchmarks: realistic rows (the package's golden inputs, repeated) and an
onnxruntime session configured like the peer's usual setup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[3]


def golden_rows(model_dir: Path) -> np.ndarray:
    """The golden inputs of a package: real feature rows the model was checked on."""
    golden = json.loads((model_dir / "golden.json").read_text())
    (inputs,) = golden["inputs"].values()
    return np.asarray(inputs, dtype=np.float32)


def feature_table(model_dir: Path, feature_names: list, rows: int) -> pa.Table:
    """``rows`` rows cycling through the golden inputs, one float32 column per feature, plus an id."""
    golden = golden_rows(model_dir)
    index = np.arange(rows) % len(golden)
    columns = {"row_id": pa.array(np.arange(rows, dtype=np.int64))}
    for j, name in enumerate(feature_names):
        columns[name] = pa.array(golden[index, j])
    return pa.table(columns)


def onnx_session(model_dir: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])

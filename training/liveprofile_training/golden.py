"""Golden examples: inputs with the training framework's outputs, shipped in every package.

``golden.json`` holds ``{"inputs": {"features": [[...], ...]}, "outputs": {"<output>":
[[...], ...]}, "notes": [str, ...]}``. Numbers are float32 values written at full
precision (the shortest decimal that reads back to the same float32 through float64).

:func:`build_golden` takes test rows plus edge cases: all zeros, the per-feature maxima
seen in training, and every vocabulary value of every category feature set on a typical
row (training medians for numeric and bool features, the most frequent index for
category features).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .schema import FeatureSchema

MIN_GOLDEN = 64


@dataclass
class Golden:
    inputs: np.ndarray  # float32 [n, n_features]
    outputs: np.ndarray  # float32 [n, k]
    notes: list[str]
    input_name: str = "features"
    output_name: str = "probability"

    def __post_init__(self) -> None:
        self.inputs = np.asarray(self.inputs, dtype=np.float32)
        self.outputs = np.asarray(self.outputs, dtype=np.float32)
        if self.outputs.ndim == 1:
            self.outputs = self.outputs[:, None]
        n = self.inputs.shape[0]
        if self.outputs.shape[0] != n or len(self.notes) != n:
            raise ValueError(
                f"golden: {n} inputs, {self.outputs.shape[0]} outputs, {len(self.notes)} notes"
            )

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def to_json(self) -> dict:
        return {
            "inputs": {self.input_name: _rows(self.inputs)},
            "outputs": {self.output_name: _rows(self.outputs)},
            "notes": list(self.notes),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, obj: dict) -> "Golden":
        if len(obj["inputs"]) != 1 or len(obj["outputs"]) != 1:
            raise ValueError("golden.json: expected exactly one input and one output tensor")
        (in_name, inputs), = obj["inputs"].items()
        (out_name, outputs), = obj["outputs"].items()
        return cls(
            inputs=np.array(inputs, dtype=np.float32),
            outputs=np.array(outputs, dtype=np.float32),
            notes=list(obj["notes"]),
            input_name=in_name,
            output_name=out_name,
        )

    @classmethod
    def load(cls, path: str | Path) -> "Golden":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def _rows(a: np.ndarray) -> list[list[float]]:
    # float(np.float32) is exact in float64, and json writes the shortest round-trip repr.
    return [[float(v) for v in row] for row in np.asarray(a, dtype=np.float32)]


def edge_cases(
    schema: FeatureSchema, X_train: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Edge-case rows (all zeros, training maxima, each category value) and their notes."""
    X_train = np.asarray(X_train, dtype=np.float32)
    n = len(schema)
    rows = [np.zeros(n, dtype=np.float32), X_train.max(axis=0)]
    notes = ["all zeros", "max seen in training"]
    base = np.median(X_train, axis=0).astype(np.float32)
    for j, f in enumerate(schema.features):
        if f.dtype == "bool":
            base[j] = np.float32(1.0 if X_train[:, j].mean() >= 0.5 else 0.0)
        elif f.is_category:
            counts = np.bincount(X_train[:, j].astype(np.int64), minlength=len(f.vocabulary or ()))
            base[j] = np.float32(int(np.argmax(counts)))
    for j, f in enumerate(schema.features):
        if not f.is_category:
            continue
        for k, value in enumerate(f.vocabulary or ()):
            row = base.copy()
            row[j] = np.float32(k)
            rows.append(row)
            notes.append(f"{f.name}={value}")
    return np.stack(rows), notes


def build_golden(
    predict: Callable[[np.ndarray], np.ndarray],
    schema: FeatureSchema,
    X_train: np.ndarray,
    X_test: np.ndarray,
    *,
    n_test: int = 48,
    seed: int = 0,
    test_ids: Sequence[object] | None = None,
    id_name: str = "id",
    output_name: str = "probability",
    minimum: int = MIN_GOLDEN,
    row_note: str = "test row",
) -> Golden:
    """Sample test rows (seeded), add the edge cases, and record ``predict`` outputs.

    ``predict`` maps float32 [n, n_features] to the model's outputs (Keras, inference
    mode). At least ``minimum`` examples are produced; more test rows are taken if the
    edge cases are few. ``row_note`` starts the note of each sampled row (``"data row"``
    when the model was trained on every row).
    """
    X_test = np.asarray(X_test, dtype=np.float32)
    edge_X, edge_notes = edge_cases(schema, X_train)
    n_test = min(max(n_test, minimum - len(edge_notes)), X_test.shape[0])
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(X_test.shape[0], size=n_test, replace=False))
    notes = []
    for i in picked:
        note = f"{row_note} {int(i)}"
        if test_ids is not None:
            note += f" ({id_name} {test_ids[int(i)]})"
        notes.append(note)
    inputs = np.concatenate([X_test[picked], edge_X], axis=0)
    outputs = np.asarray(predict(inputs), dtype=np.float32)
    golden = Golden(inputs=inputs, outputs=outputs, notes=notes + edge_notes, output_name=output_name)
    if len(golden) < minimum:
        raise ValueError(f"only {len(golden)} golden examples, need {minimum}")
    return golden

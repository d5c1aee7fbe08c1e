"""liveprofile in Python: the serving runtime, the feature pipeline and the simulator, in process.

Everything here runs liveprofile's Rust code (the same crates as ``liveprofile serve`` and the
CLI), so a score computed in a notebook or a Spark job has the server's bits:

- :class:`Model`: a model package loaded exactly as the server loads it (checksum, feature
  schema, golden parity), scoring Arrow tables and 2-D float32 arrays;
- :mod:`liveprofile.features`: user feature tables and conversion examples from event tables,
  equal to ``liveprofile features build`` and ``liveprofile features examples``;
- :func:`simulate`: ``liveprofile simulate``;
- :mod:`liveprofile.spark`: the same inside Spark (``mapInArrow`` and grouped Arrow maps).

Arrow data crosses into Rust through the Arrow C data interface (no copy through Python
objects) and the GIL is released while Rust works.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import pyarrow as pa

from . import _native
from ._native import DataError, LiveprofileError, ModelLoadError, SimulationError

__all__ = [
    "DataError",
    "LiveprofileError",
    "Model",
    "ModelLoadError",
    "SimulationError",
    "simulate",
    "__version__",
]

__version__: str = _native.__version__

PathLike = Union[str, "os.PathLike[str]"]

#: Rows per scoring call inside a batch (as ``liveprofile score --chunk-rows``).
DEFAULT_CHUNK_ROWS = 512


def _as_stream(data: Any) -> Any:
    """An object exporting an Arrow stream (``__arrow_c_stream__``) for ``data``."""
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        return data
    if hasattr(data, "__arrow_c_stream__"):
        return data
    raise TypeError(
        f"expected a pyarrow Table, RecordBatch or RecordBatchReader (or a 2-D float32 numpy array), "
        f"not {type(data).__name__}"
    )


class Model:
    """A model version loaded by the serving runtime.

    ``Model.load("models/conversion/1")`` checks the package as the server does (checksum,
    feature schema, golden parity) and raises :class:`ModelLoadError` naming what failed.
    """

    __slots__ = ("_native",)

    def __init__(self, native: _native.Model) -> None:
        self._native = native

    @classmethod
    def load(cls, path: PathLike) -> "Model":
        """Loads the model package in ``path`` (a version folder, e.g. ``models/conversion/1``)."""
        return cls(_native.Model.load(os.fspath(path)))

    @property
    def name(self) -> str:
        """The model's name."""
        return self._native.name

    @property
    def version(self) -> int:
        """The model's version."""
        return self._native.version

    @property
    def path(self) -> str:
        """The package folder."""
        return os.fspath(self._native.path)

    @property
    def inputs(self) -> List[str]:
        """Feature names in schema order: the columns :meth:`score` reads."""
        return self._native.inputs

    @property
    def outputs(self) -> List[str]:
        """Score column names, as ``liveprofile score`` names them (one per tag for multi-label models)."""
        return self._native.outputs

    @property
    def schema_hash(self) -> str:
        """The feature schema's hash."""
        return self._native.schema_hash

    @property
    def manifest(self) -> Dict[str, Any]:
        """The package's ``manifest.json``."""
        return self._native.manifest

    @property
    def feature_schema(self) -> Dict[str, Any]:
        """The feature schema: features with their types and meanings, labels, hash."""
        return self._native.feature_schema

    def score(
        self,
        data: Union[pa.Table, pa.RecordBatch, pa.RecordBatchReader, np.ndarray],
        *,
        keep: Optional[Sequence[str]] = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> pa.Table:
        """Scores every row of ``data``; returns one float32 column per output (per tag for
        multi-label models), then ``model`` and ``model_version``.

        ``data`` is a pyarrow Table, RecordBatch or RecordBatchReader whose feature columns are
        found by name (other columns are ignored; ``keep`` names columns copied in front of the
        scores), or a 2-D array of shape ``(rows, len(model.inputs))`` in schema order (no
        ``keep``). Raises :class:`DataError` naming the row, column and reason of the first value
        that cannot be scored (a missing or non-finite value, an unknown category index).
        """
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        if isinstance(data, np.ndarray):
            if keep:
                raise ValueError("keep applies to tables; an array has no other columns")
            return self._score_array(data, chunk_rows)
        return self._native.score_table(_as_stream(data), list(keep or ()), chunk_rows)

    def _score_array(self, data: np.ndarray, chunk_rows: int) -> pa.Table:
        if data.ndim != 2:
            raise DataError(f"expected a 2-D array (rows, features), got {data.ndim} dimensions")
        rows, width = data.shape
        if width != len(self.inputs):
            raise DataError(f"the array has {width} columns; the model takes {len(self.inputs)} features")
        # float32 in C order is passed on without a copy; anything else is converted once.
        values = np.ascontiguousarray(data, dtype=np.float32).reshape(-1)
        return self._native.score_rows(pa.array(values, type=pa.float32()), rows, chunk_rows)

    def _score_flat(self, values: pa.Array, rows: int, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> pa.Table:
        """Scores ``rows`` rows given as one float32 array of their features, row after row
        (nulls are missing values): the packed hand-over of :mod:`liveprofile.spark`."""
        return self._native.score_rows(values, rows, chunk_rows)

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, version={self.version}, path={self.path!r})"


def simulate(
    out: PathLike,
    *,
    users: int = 10_000,
    days: int = 7,
    seed: int = 7,
    start_ms: Optional[int] = None,
) -> Dict[str, Any]:
    """Simulates ``users`` users over ``days`` days into the event Parquet file ``out`` (the
    ground truth beside it as ``*.truth.parquet``), bit for bit as ``liveprofile simulate`` with
    the same arguments. Returns ``events_path``, ``truth_path``, ``users`` and ``events``.

    ``start_ms`` is the first day as UTC milliseconds of a China-time midnight (default
    2026-11-02).
    """
    if start_ms is None:
        start_ms = _native.DEFAULT_SIMULATION_START_MS
    report = _native.simulate(os.fspath(out), users, days, seed, start_ms)
    report["events_path"] = os.fspath(report["events_path"])
    report["truth_path"] = os.fspath(report["truth_path"])
    return report


from . import features  # noqa: E402  (the submodule uses the names above)

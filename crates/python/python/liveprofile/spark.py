"""liveprofile inside Spark: the same Rust code, with the same bits, on a cluster.

- :func:`score`: scores a DataFrame with ``mapInArrow``; each Python worker loads the model
  once and reuses it for every batch of every task it runs (Spark reuses Python workers by
  default, ``spark.python.worker.reuse``).
- :func:`build_features`: the user feature table from an events DataFrame, the events grouped
  by user with Spark's grouped Arrow map and the Rust offline driver run per group.

The package must be installed in the Python environment of the executors (for example a
wheel shipped with ``--py-files``/an archive, or the same venv with ``PYSPARK_PYTHON``), and
model packages must be readable at the same path on every executor (a shared or distributed
file system, or ``SparkContext.addFile`` and ``SparkFiles.get``).
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import pyarrow as pa

from . import DEFAULT_CHUNK_ROWS, DataError, Model, _native
from .features import Time, Window, to_ms, window_ms

__all__ = ["score", "build_features"]

#: The column that carries a row's features to Python in :func:`score`.
PACKED_COLUMN = "__liveprofile_features"

#: The column that keeps the events' arrival order through the shuffle of :func:`build_features`.
ARRIVAL_COLUMN = "__liveprofile_arrival"

# One model per (path, manifest mtime) per Python worker, shared by its tasks.
_models: Dict[Tuple[str, int], Model] = {}
_models_lock = threading.Lock()


def _worker_model(path: str) -> Model:
    """The model in ``path``, loaded once per worker process (again if its manifest changes)."""
    key = (path, os.stat(os.path.join(path, "manifest.json")).st_mtime_ns)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = Model.load(path)
            _models[key] = model
        return model


def _output_schema(model: Model, df_schema, keep: Sequence[str]):
    from pyspark.sql.types import FloatType, LongType, StringType, StructField, StructType

    fields = [df_schema[k] for k in keep]
    fields += [StructField(name, FloatType(), False) for name in model.outputs]
    fields += [StructField("model", StringType(), False), StructField("model_version", LongType(), False)]
    return StructType(fields)


def _version_as_long(scored: pa.Table) -> pa.Table:
    # Spark has no unsigned integers: the version is a long here.
    i = scored.schema.get_field_index("model_version")
    return scored.set_column(i, "model_version", scored.column(i).cast(pa.int64()))


def _packed_scorer(path: str, keep: Sequence[str], chunk_rows: int) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    keep = list(keep)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = _worker_model(path)
        width = len(model.inputs)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            packed = batch.column(PACKED_COLUMN)
            values = packed.flatten()
            if len(values) != batch.num_rows * width:  # Spark's array() gives every row all features
                raise DataError(f"packed features hold {len(values)} values for {batch.num_rows} rows of {width}")
            scored = _version_as_long(model._score_flat(values, batch.num_rows, chunk_rows))
            columns = [batch.column(k) for k in keep] + scored.columns
            names = keep + scored.column_names
            yield from pa.Table.from_arrays(columns, names=names).to_batches()

    return run


def _named_scorer(path: str, keep: Sequence[str], chunk_rows: int) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    keep = list(keep)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = _worker_model(path)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            yield from _version_as_long(model.score(batch, keep=keep, chunk_rows=chunk_rows)).to_batches()

    return run


def score(df, model_path: str, keep: Sequence[str] = (), *, chunk_rows: int = DEFAULT_CHUNK_ROWS):
    """Scores every row of ``df`` with the model package in ``model_path``.

    Returns a DataFrame with the ``keep`` columns, one float column per output (named as
    ``liveprofile score`` names them), ``model`` and ``model_version`` (a long: Spark has no
    unsigned integers); the scores equal ``liveprofile score``'s bit for bit. Partitions are
    kept: each is scored in its Arrow batches (``spark.sql.execution.arrow.maxRecordsPerBatch``
    rows each) on its executor's cores. The model is loaded here first, so a package that does
    not load fails before any task starts; a bad row fails its task with the row (within its
    Arrow batch), column and reason.

    Numeric and boolean feature columns travel to Python packed in one float array column
    (Spark's ``array()``, cast to float as the CLI casts them): Spark writes one Arrow column
    instead of one per feature, which halves the cost of the hand-over for wide tables. With a
    text feature column, the columns travel by name and are parsed as the CLI parses them.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, NumericType

    model = Model.load(model_path)  # checks the package and gives the output columns
    keep = list(keep)
    missing = [c for c in list(model.inputs) + keep if c not in df.columns]
    if missing:
        raise DataError(f"columns missing from the DataFrame: {', '.join(missing)}")
    if PACKED_COLUMN in keep:
        raise DataError(f"{PACKED_COLUMN} is the name of liveprofile's packed feature column")
    path = os.path.abspath(model_path)
    schema = _output_schema(model, df.schema, keep)
    numeric = all(isinstance(df.schema[c].dataType, (NumericType, BooleanType)) for c in model.inputs)
    if numeric:
        packed = F.array(*[F.col(c).cast("float") for c in model.inputs]).alias(PACKED_COLUMN)
        return df.select(*keep, packed).mapInArrow(_packed_scorer(path, keep, chunk_rows), schema)
    needed = list(dict.fromkeys(keep + list(model.inputs)))
    return df.select(*needed).mapInArrow(_named_scorer(path, keep, chunk_rows), schema)


def _feature_part(cutoff_ms: int, window: Optional[int]) -> Callable[[pa.Table], pa.Table]:
    def run(events: pa.Table) -> pa.Table:
        events = events.sort_by(ARRIVAL_COLUMN)
        table, _ = _native.user_table(events, cutoff_ms, window, part=True)
        return table

    return run


def _empty_events() -> pa.Table:
    fields = [
        ("event_id", pa.string()),
        ("ts_ms", pa.int64()),
        ("platform", pa.string()),
        ("user_id", pa.string()),
        ("platform_user_id", pa.string()),
        ("room_id", pa.string()),
        ("host_id", pa.string()),
        ("category", pa.string()),
        ("kind", pa.string()),
        ("item_id", pa.string()),
        ("value", pa.float64()),
        ("coupon", pa.bool_()),
    ]
    return pa.table({name: pa.array([], type=t) for name, t in fields})


def build_features(events_df, cutoff: Time, label_window: Window = "7d"):
    """The user feature table as of ``cutoff`` from an events DataFrame (the event contract's
    columns), with labels from the ``label_window`` after it: the rows of
    ``liveprofile features build`` on the same events, bit for bit (row order aside).

    The DataFrame's order is taken as arrival order (as a file's row order is): it is recorded
    before the shuffle and each user's events are sorted back into it. The label window is
    checked on the driver against the newest ``ts_ms`` of the DataFrame (the CLI checks the
    newest accepted event; they differ only when the newest rows break the contract).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    cutoff_ms = to_ms(cutoff)
    window = window_ms(label_window)
    if window is not None:
        newest = events_df.agg(F.max("ts_ms")).first()[0]
        _native.check_label_coverage(newest, cutoff_ms, window)
    # The output's columns, from the driver's own run on no events.
    empty, _ = _native.user_table(_empty_events(), cutoff_ms, window, part=True)
    schema = from_arrow_schema(empty.schema)
    ordered = events_df.withColumn(ARRIVAL_COLUMN, F.monotonically_increasing_id())
    return ordered.groupBy("user_id").applyInArrow(_feature_part(cutoff_ms, window), schema)

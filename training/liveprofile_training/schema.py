"""Feature schemas and feature tables.

A feature schema is the ordered list of model inputs shared by the Rust feature code and
the notebooks. Its JSON form is a fixed contract::

    {"name": str, "version": 1,
     "features": [{"name", "dtype": "float32" | "category" | "bool", "meaning",
                   "window": str | null, "vocabulary": [str, ...] (category only)}],
     "labels": [{"name", "definition"}],
     "hash": "<hex>"}

The hash is the lowercase hex SHA-256 of the UTF-8 bytes of, for every feature in order,
the line ``name \\t dtype \\t (window or "") \\t "|".join(vocabulary or []) \\n``. Labels and
meanings are not part of it. A category value reaches a model as the float index of the
value in the feature's vocabulary.

A feature table is a Parquet file written by the Rust pipeline: a ``user_id`` column, one
float32 column per feature and one ``label_<name>`` int8 column per label.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

DTYPES = ("float32", "category", "bool")
LABEL_PREFIX = "label_"


class SchemaError(ValueError):
    """A schema file or a feature table does not satisfy the contract."""


@dataclass(frozen=True)
class Feature:
    """One model input column."""

    name: str
    dtype: str
    meaning: str = ""
    window: str | None = None
    vocabulary: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "\t\n"):
            raise SchemaError(f"bad feature name {self.name!r}")
        if self.dtype not in DTYPES:
            raise SchemaError(
                f"feature {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}"
            )
        if self.dtype == "category":
            if not self.vocabulary:
                raise SchemaError(f"feature {self.name!r}: category needs a vocabulary")
            vocab = tuple(str(v) for v in self.vocabulary)
            if len(set(vocab)) != len(vocab):
                raise SchemaError(f"feature {self.name!r}: vocabulary has duplicates")
            for v in vocab:
                if any(c in v for c in "|\t\n"):
                    raise SchemaError(
                        f"feature {self.name!r}: vocabulary value {v!r} contains '|', tab or newline"
                    )
            object.__setattr__(self, "vocabulary", vocab)
        elif self.vocabulary is not None:
            raise SchemaError(f"feature {self.name!r}: only category features have a vocabulary")

    @property
    def is_category(self) -> bool:
        return self.dtype == "category"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "meaning": self.meaning,
            "window": self.window,
        }
        if self.vocabulary is not None:
            out["vocabulary"] = list(self.vocabulary)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Feature":
        try:
            vocab = obj.get("vocabulary")
            return cls(
                name=obj["name"],
                dtype=obj["dtype"],
                meaning=obj.get("meaning", ""),
                window=obj.get("window"),
                vocabulary=tuple(vocab) if vocab is not None else None,
            )
        except KeyError as exc:
            raise SchemaError(f"feature entry {dict(obj)!r} lacks {exc}") from None


@dataclass(frozen=True)
class Label:
    """One training target."""

    name: str
    definition: str = ""

    @property
    def column(self) -> str:
        """Column holding this label in a feature table."""
        return LABEL_PREFIX + self.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "definition": self.definition}


@dataclass(frozen=True)
class FeatureSchema:
    """An ordered feature list with labels; ``hash`` is always the recomputed value."""

    name: str
    features: tuple[Feature, ...]
    labels: tuple[Label, ...] = ()
    version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "labels", tuple(self.labels))
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"schema {self.name!r}: duplicate feature names {dupes}")
        if not self.features:
            raise SchemaError(f"schema {self.name!r} has no features")

    @property
    def hash(self) -> str:
        return schema_hash(self.features)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def label_names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def __len__(self) -> int:
        return len(self.features)

    def index(self, name: str) -> int:
        """Column position of a feature."""
        for i, f in enumerate(self.features):
            if f.name == name:
                return i
        raise KeyError(f"schema {self.name!r} has no feature {name!r}")

    def feature(self, name: str) -> Feature:
        return self.features[self.index(name)]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "features": [f.to_json() for f in self.features],
            "labels": [lab.to_json() for lab in self.labels],
            "hash": self.hash,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, verify_hash: bool = True) -> "FeatureSchema":
        try:
            schema = cls(
                name=obj["name"],
                version=int(obj.get("version", 1)),
                features=tuple(Feature.from_json(f) for f in obj["features"]),
                labels=tuple(
                    Label(name=lab["name"], definition=lab.get("definition", ""))
                    for lab in obj.get("labels", [])
                ),
            )
        except KeyError as exc:
            raise SchemaError(f"schema lacks {exc}") from None
        stored = obj.get("hash")
        if verify_hash and stored is not None and stored != schema.hash:
            raise SchemaError(
                f"schema {schema.name!r}: stored hash {stored} != recomputed {schema.hash}"
            )
        return schema


def hash_lines(features: Iterable[Feature]) -> str:
    """The text whose SHA-256 is the schema hash."""
    return "".join(
        f"{f.name}\t{f.dtype}\t{f.window or ''}\t{'|'.join(f.vocabulary or ())}\n"
        for f in features
    )


def schema_hash(features: Iterable[Feature]) -> str:
    """Lowercase hex SHA-256 of :func:`hash_lines`."""
    return hashlib.sha256(hash_lines(features).encode("utf-8")).hexdigest()


def load_schema(path: str | Path, *, verify_hash: bool = True) -> FeatureSchema:
    """Read a ``feature_schema.json``; a stored hash that disagrees is an error."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from None
    try:
        return FeatureSchema.from_json(obj, verify_hash=verify_hash)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None


def write_schema(schema: FeatureSchema, path: str | Path) -> Path:
    """Write the schema with its hash; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema.dumps(), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Feature tables


@dataclass
class FeatureTable:
    """Model-ready arrays: ``X`` float32 [rows, features] in schema order, ``y`` labels."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    label_names: list[str]
    ids: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def subset(self, rows: np.ndarray) -> "FeatureTable":
        return FeatureTable(
            X=self.X[rows],
            y=self.y[rows],
            feature_names=self.feature_names,
            label_names=self.label_names,
            ids=None if self.ids is None else self.ids[rows],
            extra={k: v[rows] for k, v in self.extra.items()},
        )


def _missing(required: Sequence[str], present: Iterable[str]) -> list[str]:
    have = set(present)
    return [c for c in required if c not in have]


def check_feature_values(X: np.ndarray, schema: FeatureSchema) -> None:
    """Raise if a value is not finite, a bool is not 0/1 or a category index is invalid."""
    bad = ~np.isfinite(X)
    if bad.any():
        cols = sorted({schema.features[j].name for j in np.nonzero(bad)[1]})
        raise SchemaError(f"non-finite values in feature columns {cols}")
    for j, f in enumerate(schema.features):
        col = X[:, j]
        if f.dtype == "bool" and not np.isin(col, (0.0, 1.0)).all():
            raise SchemaError(f"bool feature {f.name!r} has values other than 0 and 1")
        if f.is_category:
            n = len(f.vocabulary or ())
            ok = (col == np.floor(col)) & (col >= 0) & (col < n)
            if not ok.all():
                example = col[~ok][0]
                raise SchemaError(
                    f"category feature {f.name!r}: value {example!r} is not an index "
                    f"into its vocabulary of {n}"
                )


def table_from_frame(
    frame: Any,
    schema: FeatureSchema,
    *,
    labels: Sequence[str] | None = None,
    id_column: str | None = "user_id",
    check_values: bool = True,
) -> FeatureTable:
    """Pick the schema's columns out of a pandas DataFrame (already index-encoded).

    Label columns are looked up as ``label_<name>`` and then as the bare name.
    """
    columns = list(frame.columns)
    missing = _missing(schema.feature_names, columns)
    if missing:
        raise SchemaError(
            f"feature table lacks {len(missing)} schema feature(s): {', '.join(missing)}"
        )
    label_names = list(labels) if labels is not None else schema.label_names
    label_cols = []
    for name in label_names:
        if LABEL_PREFIX + name in columns:
            label_cols.append(LABEL_PREFIX + name)
        elif name in columns:
            label_cols.append(name)
        else:
            raise SchemaError(
                f"feature table lacks label column {LABEL_PREFIX + name!r} for label {name!r}"
            )
    X = np.ascontiguousarray(frame[schema.feature_names].to_numpy(dtype=np.float32))
    if check_values:
        check_feature_values(X, schema)
    y = (
        frame[label_cols].to_numpy(dtype=np.int8)
        if label_cols
        else np.zeros((len(frame), 0), dtype=np.int8)
    )
    ids = frame[id_column].to_numpy() if id_column and id_column in columns else None
    return FeatureTable(X=X, y=y, feature_names=schema.feature_names, label_names=label_names, ids=ids)


def schema_path_for(table_path: str | Path) -> Path:
    """The schema file of a feature table: ``<table>.schema.json`` as the Rust pipeline
    writes it (``users.parquet`` -> ``users.schema.json``), else ``feature_schema.json``
    in the same folder."""
    table_path = Path(table_path)
    beside = table_path.with_name(table_path.stem + ".schema.json")
    return beside if beside.is_file() else table_path.parent / "feature_schema.json"


def _positions(names: Sequence[str]) -> dict[str, list[int]]:
    where: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        where.setdefault(name, []).append(i)
    return where


def feature_positions(names: Sequence[str], schema: FeatureSchema) -> list[int]:
    """Column positions of the schema's features in a table with columns ``names``.

    The features are found as one contiguous block in schema order (so a feature may share
    its name with a column outside the block, e.g. a ``platform`` text column beside the
    ``platform`` category feature); otherwise each feature is looked up by its name, which
    must then be unique.
    """
    names = list(names)
    wanted = schema.feature_names
    n = len(wanted)
    where = _positions(names)
    for start in where.get(wanted[0], []):
        if names[start : start + n] == wanted:
            return list(range(start, start + n))
    missing = _missing(wanted, names)
    if missing:
        raise SchemaError(
            f"feature table lacks {len(missing)} schema feature(s): {', '.join(missing)}"
        )
    dupes = [c for c in wanted if len(where[c]) > 1]
    if dupes:
        raise SchemaError(
            f"feature columns {dupes} appear more than once and the schema's features are "
            "not one contiguous block in schema order"
        )
    return [where[c][0] for c in wanted]


def _outside(names: Sequence[str], name: str, block: set[int]) -> int | None:
    """Position of column ``name`` outside the feature block (None if absent)."""
    found = [i for i in _positions(names).get(name, []) if i not in block]
    if len(found) > 1:
        raise SchemaError(f"column {name!r} appears {len(found)} times outside the features")
    return found[0] if found else None


def load_feature_table(
    path: "str | Path | pa.Table",
    schema: FeatureSchema | str | Path | None = None,
    *,
    labels: Sequence[str] | None = None,
    check_values: bool = True,
    id_column: str | None = "user_id",
    columns: Sequence[str] = (),
    keep_ids: Iterable[Any] | None = None,
    batch_rows: int = 1 << 18,
) -> tuple[FeatureTable, FeatureSchema]:
    """Read a Parquet feature table (or take one in memory) and return (table, schema).

    ``path`` is a Parquet file or a pyarrow Table (e.g. from ``liveprofile.features.build``,
    the same Rust pipeline in process; give ``schema`` then). ``schema`` may be a loaded
    schema, a path to one, or None for the schema beside the file
    (:func:`schema_path_for`). Only the needed columns are read, in batches.

    * ``columns``: other columns to return in ``table.extra`` (e.g. ``room_id``); a name
      shared with a feature means the column outside the feature block.
    * ``keep_ids``: read only the rows whose ``id_column`` value is in this collection.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    in_memory = isinstance(path, pa.Table)
    if in_memory:
        if schema is None:
            raise SchemaError("a feature table in memory needs its schema")
        names = list(path.column_names)
        path, memory = "<feature table>", path
    else:
        path = Path(path)
        if schema is None:
            schema = schema_path_for(path)
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
    if not isinstance(schema, FeatureSchema):
        schema = load_schema(schema)
    try:
        feat = feature_positions(names, schema)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None
    block = set(feat)

    label_names = list(labels) if labels is not None else schema.label_names
    label_pos = []
    for name in label_names:
        pos = _outside(names, LABEL_PREFIX + name, block)
        if pos is None:
            pos = _outside(names, name, block)
        if pos is None:
            raise SchemaError(
                f"{path}: feature table lacks label column {LABEL_PREFIX + name!r} for label {name!r}"
            )
        label_pos.append(pos)
    id_pos = _outside(names, id_column, block) if id_column else None
    if keep_ids is not None and id_pos is None:
        raise SchemaError(f"{path}: keep_ids given but the table has no {id_column!r} column")
    extra_pos = {}
    for name in columns:
        pos = _outside(names, name, block)
        if pos is None:
            raise SchemaError(f"{path}: feature table lacks column {name!r}")
        extra_pos[name] = pos

    needed = sorted(set(feat) | set(label_pos) | set(extra_pos.values()) | ({id_pos} - {None}))
    needed_names = [names[i] for i in needed]
    # Select columns by name only when every needed name is unique in the file.
    counts = _positions(names)
    by_name = all(len(counts[n]) == 1 for n in needed_names)
    keep = None
    if keep_ids is not None:
        keep = pa.array(list(keep_ids) if not isinstance(keep_ids, np.ndarray) else keep_ids)

    xs, ys, ids, extras = [], [], [], {name: [] for name in extra_pos}
    if in_memory:
        batches = (memory.select(needed_names) if by_name else memory).to_batches(max_chunksize=batch_rows)
    else:
        batches = pf.iter_batches(batch_size=batch_rows, columns=needed_names if by_name else None)
    for batch in batches:
        if keep is not None:
            key = batch.column(names[id_pos]) if by_name else batch.column(id_pos)
            batch = batch.filter(pc.is_in(key, value_set=keep))
            if batch.num_rows == 0:
                continue
        col = (lambda i, b=batch: b.column(names[i])) if by_name else batch.column
        xs.append(
            np.column_stack([col(i).to_numpy(zero_copy_only=False) for i in feat]).astype(
                np.float32, copy=False
            )
        )
        ys.append(
            np.column_stack([col(i).to_numpy(zero_copy_only=False) for i in label_pos]).astype(np.int8)
            if label_pos
            else np.zeros((batch.num_rows, 0), dtype=np.int8)
        )
        if id_pos is not None:
            ids.append(col(id_pos).to_numpy(zero_copy_only=False))
        for name, i in extra_pos.items():
            extras[name].append(col(i).to_numpy(zero_copy_only=False))

    X = np.ascontiguousarray(np.concatenate(xs)) if xs else np.zeros((0, len(schema)), np.float32)
    y = np.concatenate(ys) if ys else np.zeros((0, len(label_pos)), np.int8)
    if check_values:
        try:
            check_feature_values(X, schema)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None
    table = FeatureTable(
        X=X,
        y=y,
        feature_names=schema.feature_names,
        label_names=label_names,
        ids=np.concatenate(ids) if id_pos is not None and ids else (np.zeros(0, object) if id_pos is not None else None),
        extra={k: np.concatenate(v) if v else np.zeros(0) for k, v in extras.items()},
    )
    return table, schema


def encode_frame(frame: Any, schema: FeatureSchema) -> Any:
    """Encode raw values into model inputs: category -> vocabulary index, bool -> 0/1.

    Returns a new DataFrame with the schema's features as float32 columns plus every other
    column unchanged. An unseen category value is an error naming the feature and value.
    """
    import pandas as pd

    missing = _missing(schema.feature_names, frame.columns)
    if missing:
        raise SchemaError(f"frame lacks schema feature(s): {', '.join(missing)}")
    out = frame.copy()
    for f in schema.features:
        col = frame[f.name]
        if f.is_category:
            lookup = {v: float(i) for i, v in enumerate(f.vocabulary or ())}
            as_text = col.map(_category_text)
            unknown = sorted(set(as_text) - set(lookup))
            if unknown:
                raise SchemaError(f"feature {f.name!r}: values {unknown} not in vocabulary")
            out[f.name] = as_text.map(lookup).astype(np.float32)
        elif f.dtype == "bool":
            out[f.name] = pd.Series(_to_bool(col), index=col.index).astype(np.float32)
        else:
            out[f.name] = col.astype(np.float32)
    return out


def _category_text(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


def _to_bool(col: Any) -> np.ndarray:
    if col.dtype == bool:
        return col.to_numpy()
    text = col.astype(str).str.strip().str.lower()
    mapping = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    bad = sorted(set(text) - set(mapping))
    if bad:
        raise SchemaError(f"bool column {col.name!r} has values {bad}")
    return text.map(mapping).to_numpy(dtype=bool)

"""Drift references: what a model's training rows looked like, for the service's drift
monitor and ``liveprofile drift`` (the binning, PSI and KS of ``liveprofile-drift``).

``reference(model_or_outputs, feature_table)`` bins every feature of the training rows
(quantile edges, duplicates removed; a column of at most ``bins`` distinct values gets a
bin per value) and every output: with a :class:`~liveprofile.Model`, the outputs it
gives on those rows, which must then be complete (a null, NaN or infinite feature value
raises an error naming the column: impute as for training); with an outputs table, its
columns, and nulls, NaN and infinities are counted as missing. ``reference_json`` gives
the same reference as the text of ``drift_reference.json``; write that text into the
package folder as :data:`REFERENCE_FILE` and put ``manifest_entry(text)`` (the file name
and its sha256) under the manifest's ``"drift_reference"`` key. This module writes no
files.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Optional, Union

import pyarrow as pa

from . import Model, _as_stream, _native

__all__ = ["REFERENCE_FILE", "reference", "reference_json", "manifest_entry"]

#: File name of the reference inside a package.
REFERENCE_FILE = "drift_reference.json"


def reference_json(
    model_or_outputs: Union[Model, pa.Table, None],
    feature_table: Union[pa.Table, pa.RecordBatch, pa.RecordBatchReader],
    *,
    description: str = "",
    bins: int = 20,
    schema_hash: Optional[str] = None,
) -> str:
    """The reference as the JSON text of ``drift_reference.json``."""
    features = _as_stream(feature_table)
    if isinstance(model_or_outputs, Model):
        return _native.drift_reference(
            features, model=model_or_outputs._native, description=description, bins=bins
        )
    outputs = None if model_or_outputs is None else _as_stream(model_or_outputs)
    return _native.drift_reference(
        features, outputs=outputs, schema_hash=schema_hash, description=description, bins=bins
    )


def reference(
    model_or_outputs: Union[Model, pa.Table, None],
    feature_table: Union[pa.Table, pa.RecordBatch, pa.RecordBatchReader],
    *,
    description: str = "",
    bins: int = 20,
    schema_hash: Optional[str] = None,
) -> Dict[str, Any]:
    """The reference as a dictionary (see :func:`reference_json`)."""
    return json.loads(
        reference_json(
            model_or_outputs, feature_table, description=description, bins=bins, schema_hash=schema_hash
        )
    )


def manifest_entry(text: str) -> Dict[str, str]:
    """The manifest's ``drift_reference`` entry for the reference text ``text``."""
    return {"file": REFERENCE_FILE, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}

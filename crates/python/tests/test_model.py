"""liveprofile.Model: the server's loading checks, golden parity, the CLI's bits, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

import liveprofile
from conftest import BUNDLED, MODELS, read


def golden_arrays(path):
    golden = json.loads((path / "golden.json").read_text())
    (inputs,) = golden["inputs"].values()
    return np.asarray(inputs, dtype=np.float32), golden["outputs"]


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: f"{p.parent.name}@{p.name}")
def test_every_bundled_model_scores_its_golden_rows_within_tolerance(path):
    model = liveprofile.Model.load(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert (model.name, model.version) == (manifest["name"], manifest["version"])
    assert model.manifest == manifest
    assert model.inputs == [f["name"] for f in model.feature_schema["features"]]
    inputs, outputs = golden_arrays(path)
    scored = model.score(inputs)
    assert scored.num_rows == len(inputs)
    tolerance = manifest["golden"]["tolerance"]
    column = 0
    for spec in manifest["outputs"]:
        expected = np.asarray(outputs[spec["name"]], dtype=np.float64)
        names = spec["names"] if len(spec["names"]) > 1 else [spec["name"]]
        got = np.column_stack([scored.column(n).to_numpy() for n in names]).astype(np.float64)
        assert got.shape == expected.shape
        assert np.max(np.abs(got - expected)) <= tolerance, spec["name"]
        column += len(names)
    assert column == len(model.outputs)
    assert scored.column("model").to_pylist() == [model.name] * len(inputs)
    assert scored.column("model_version").to_pylist() == [model.version] * len(inputs)


def test_array_and_table_inputs_give_the_same_bits_whatever_the_chunking():
    model = liveprofile.Model.load(MODELS / "user_tags" / "1")
    inputs, _ = golden_arrays(MODELS / "user_tags" / "1")
    rows = np.tile(inputs, (40, 1))  # 2,560 rows: several chunks, a partial last one
    table = pa.table({name: rows[:, j] for j, name in enumerate(model.inputs)})
    from_array = model.score(rows)
    for chunk_rows in (1, 7, 512, 4096):
        from_table = model.score(table, chunk_rows=chunk_rows)
        assert from_table.equals(from_array), chunk_rows
    # float64 and Fortran-ordered arrays are converted, not misread.
    assert model.score(np.asfortranarray(rows.astype(np.float64))).equals(from_array)
    # Batches, readers and tables are the same data.
    assert model.score(table.to_batches()[0]).equals(model.score(table.slice(0, table.to_batches()[0].num_rows)))
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=300))
    assert model.score(reader).equals(from_array)


@pytest.mark.parametrize(
    ("model_name", "table_name", "keep"),
    [("user_tags", "features", "user_id,main_platform"), ("conversion", "examples_to_score", "user_id,room_id,decision_ms")],
)
def test_scores_equal_the_cli_bit_for_bit_on_a_simulated_table(cli, model_name, table_name, keep):
    table_path = getattr(cli, table_name)
    expected = read(cli.score(model_name, table_path, keep))
    model = liveprofile.Model.load(MODELS / model_name / "1")
    got = model.score(read(table_path), keep=keep.split(","))
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows > 1_000
    for name in model.outputs:
        a = got.column(name).to_numpy().view(np.uint32)
        b = expected.column(name).to_numpy().view(np.uint32)
        assert np.array_equal(a, b), name
    for name in keep.split(",") + ["model", "model_version"]:
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name


def test_bad_data_raises_data_error_naming_row_column_and_reason():
    model = liveprofile.Model.load(MODELS / "conversion" / "1")
    inputs, _ = golden_arrays(MODELS / "conversion" / "1")
    table = pa.table({name: inputs[:, j] for j, name in enumerate(model.inputs)})
    bad = inputs.copy()
    bad[5, 2] = np.inf
    with pytest.raises(liveprofile.DataError, match=rf'row 5, column "{model.inputs[2]}": not finite'):
        model.score(bad)
    # Rows are counted across the batches of a table.
    batches = table.to_batches(max_chunksize=4)
    column = table.column(model.inputs[0]).to_pylist()
    column[9] = None
    holed = table.set_column(0, model.inputs[0], pa.array(column, type=pa.float32()))
    with pytest.raises(liveprofile.DataError, match=rf'row 9, column "{model.inputs[0]}": missing value'):
        model.score(pa.RecordBatchReader.from_batches(holed.schema, holed.to_batches(max_chunksize=4)))
    assert len(batches) > 2
    with pytest.raises(liveprofile.DataError, match=f"missing 2 column.*{model.inputs[0]}, {model.inputs[1]}"):
        model.score(table.drop_columns(model.inputs[:2]))
    with pytest.raises(liveprofile.DataError, match="kept column \"model\" has the name of an output column"):
        model.score(table.append_column("model", pa.array(["x"] * table.num_rows)), keep=["model"])
    with pytest.raises(liveprofile.DataError, match="columns; the model takes"):
        model.score(inputs[:, :-1])
    with pytest.raises(TypeError, match="expected a pyarrow Table"):
        model.score([[1.0, 2.0]])
    # The model still scores after every refusal.
    assert model.score(inputs).num_rows == len(inputs)


def test_a_package_that_does_not_load_raises_model_load_error_naming_why(tmp_path):
    copy = tmp_path / "conversion" / "1"
    shutil.copytree(MODELS / "conversion" / "1", copy)
    onnx = copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(liveprofile.ModelLoadError, match="sha256"):
        liveprofile.Model.load(copy)
    with pytest.raises(liveprofile.ModelLoadError, match="manifest.json"):
        liveprofile.Model.load(tmp_path / "missing" / "1")
    assert issubclass(liveprofile.ModelLoadError, liveprofile.LiveprofileError)
    assert issubclass(liveprofile.DataError, liveprofile.LiveprofileError)

"""Runs every notebook in smoke mode (see conftest.smoke_run) and checks what it published."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime

import nbformat
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import NOTEBOOKS, TRAINING_DIR, run_notebook
from liveprofile_training.package import PackageExistsError, publish_files
from liveprofile_training.schema import FeatureSchema, hash_lines

pytestmark = pytest.mark.notebook
REPO_ROOT = TRAINING_DIR.parent

MANIFEST_KEYS = {
    "name", "version", "task", "created_at", "inputs", "outputs", "feature_schema",
    "training_data", "metrics", "framework", "onnx_sha256", "golden",
}
FRAMEWORK_KEYS = {"python", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "opset"}
# Ops the Rust engine is expected to run; Log serves Log(x + 1) transforms.
ALLOWED_OPS = {
    "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Concat", "Equal",
    "Cast", "Gather", "Slice", "Reshape", "Log",
}


# Models scored per event by the Rust engine, where each node costs about a microsecond.
NODE_BUDGET = {"conversion": 11}


def _load(pkg, name):
    return json.loads((pkg / name).read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "training/notebooks has no notebooks"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_parameters_cell(notebook):
    import papermill

    params = papermill.inspect_notebook(str(notebook))
    assert {"mode", "models_dir", "seed"} <= set(params), params
    assert params["mode"]["default"].strip("'\"") == "full"
    if "data_dir" in params:
        assert params["data_dir"]["default"].strip("'\"") == "training/data"
    nb = nbformat.read(notebook, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_kernel_runs_in_this_venv(tmp_path, venv_prefix):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("out = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import sys, pathlib\npathlib.Path(out).write_text(sys.prefix)"),
    ]
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, src)
    run_notebook(src, tmp_path / "probe.out.ipynb", {"out": str(tmp_path / "prefix.txt")})
    assert os.path.realpath((tmp_path / "prefix.txt").read_text()) == os.path.realpath(venv_prefix)


def test_smoke_run_published_a_package(smoke_run):
    assert smoke_run.packages, f"{smoke_run.notebook.name} published nothing into {smoke_run.models_dir}"
    leftovers = [p for p in smoke_run.models_dir.glob("*/.*")]
    assert not leftovers, f"temporary folders left behind: {leftovers}"
    for pkg in smoke_run.packages:
        assert sorted(p.name for p in pkg.iterdir()) == [
            "drift_reference.json", "feature_schema.json", "golden.json", "manifest.json", "model.onnx",
        ]


def test_manifest_is_complete_and_consistent(smoke_run):
    for pkg in smoke_run.packages:
        m = _load(pkg, "manifest.json")
        assert MANIFEST_KEYS <= set(m), MANIFEST_KEYS - set(m)
        assert m["name"] == pkg.parent.name and str(m["version"]) == pkg.name
        assert isinstance(m["version"], int)
        assert m["task"] in ("binary_classification", "multi_label", "segmentation")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", m["created_at"])
        datetime.fromisoformat(m["created_at"].replace("Z", "+00:00"))

        digest = hashlib.sha256((pkg / "model.onnx").read_bytes()).hexdigest()
        assert m["onnx_sha256"] == digest

        # The drift reference of the fit rows: named with its checksum, every feature in
        # schema order and every output column, each counting every row.
        drift_bytes = (pkg / "drift_reference.json").read_bytes()
        assert m["drift_reference"] == {
            "file": "drift_reference.json", "sha256": hashlib.sha256(drift_bytes).hexdigest(),
        }
        drift = json.loads(drift_bytes)
        assert [c["name"] for c in drift["features"]] == m["inputs"][0]["features"]
        columns = m["outputs"][0]["names"] if len(m["outputs"][0]["names"]) > 1 else [m["outputs"][0]["name"]]
        assert [c["name"] for c in drift["outputs"]] == columns
        assert drift["rows"] > 0 and drift["schema_hash"] == m["feature_schema"]["hash"]
        for c in drift["features"] + drift["outputs"]:
            assert sum(c["counts"]) + c["missing"] == drift["rows"], c["name"]

        raw_schema = _load(pkg, "feature_schema.json")
        schema = FeatureSchema.from_json(raw_schema, verify_hash=False)
        recomputed = hashlib.sha256(hash_lines(schema.features).encode("utf-8")).hexdigest()
        assert raw_schema["hash"] == recomputed
        assert m["feature_schema"] == {"file": "feature_schema.json", "name": raw_schema["name"], "hash": recomputed}

        (inp,) = m["inputs"]
        assert inp["name"] == "features" and inp["dtype"] == "float32"
        assert inp["features"] == [f["name"] for f in raw_schema["features"]]
        assert inp["shape"] == [-1, len(raw_schema["features"])]
        (out,) = m["outputs"]
        assert out["dtype"] == "float32" and out["shape"] == [-1, len(out["names"])]
        if m["task"] == "binary_classification":
            assert len(out["names"]) == 1

        td = m["training_data"]
        assert {"description", "source", "citation", "rows"} <= set(td)
        assert td["rows"]["train"] > 0 and td["rows"]["test"] > 0
        assert {"test", "baselines"} <= set(m["metrics"])
        test = m["metrics"]["test"]
        if m["task"] == "binary_classification":
            assert 0.0 <= test["roc_auc"] <= 1.0
        elif m["task"] == "segmentation":
            _check_segmentation_manifest(m, test)
        else:
            assert 0.0 <= test["roc_auc_macro"] <= 1.0
            for name in out["names"]:
                assert 0.0 <= test[f"roc_auc.{name}"] <= 1.0, name
        # every output is one of the schema's labels
        assert set(out["names"]) <= {lab["name"] for lab in raw_schema["labels"]}, out["names"]
        assert len(set(out["names"])) == len(out["names"])
        assert FRAMEWORK_KEYS <= set(m["framework"])
        assert m["golden"]["file"] == "golden.json" and m["golden"]["tolerance"] <= 1e-5


def _check_segmentation_manifest(m, test):
    """A segment package: one distance column per segment, the tags model's tag order."""
    (inp,), (out,) = m["inputs"], m["outputs"]
    seg = m["segmentation"]
    assert out["name"] == "distances"
    assert out["names"] == [f"segment_{i}" for i in range(seg["k"])]
    assert seg["tag_order"] == inp["features"]
    assert [s["id"] for s in seg["segments"]] == list(range(seg["k"]))
    for s in seg["segments"]:
        assert s["name"] == out["names"][s["id"]] and len(s["centroid"]) == len(inp["features"])
        assert s["top_tags"] and {t["tag"] for t in s["top_tags"]} <= set(inp["features"])
    assert sum(s["size"] for s in seg["segments"]) == m["training_data"]["rows"]["train"]
    assert seg["scaling"] == "none" and seg["criterion"] and seg["source"]["sha256"]
    assert seg["k"] in {s["k"] for s in seg["k_scores"]}
    tags_model = m["training_data"]["tags_model"]
    tags_manifest = json.loads(
        (REPO_ROOT / "models" / tags_model["name"] / str(tags_model["version"]) / "manifest.json").read_text()
    )
    assert tags_manifest["outputs"][0]["names"] == inp["features"]
    assert tags_manifest["onnx_sha256"] == tags_model["onnx_sha256"]
    # every user the segments were fitted on checked, none disagreeing beyond a float32 tie
    assert test["onnx_rows"] == m["training_data"]["rows"]["train"] > 0
    assert test["onnx_margin_of_disagreements"] <= 1e-5


def test_onnx_graph_is_lean_with_symbolic_batch(smoke_run):
    for pkg in smoke_run.packages:
        m = _load(pkg, "manifest.json")
        model = onnx.load(str(pkg / "model.onnx"))
        onnx.checker.check_model(model, full_check=True)
        initializers = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        assert [i.name for i in inputs] == ["features"]
        dims = inputs[0].type.tensor_type.shape.dim
        assert inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert len(dims) == 2 and dims[0].dim_param and not dims[0].HasField("dim_value")
        assert dims[1].dim_value == m["inputs"][0]["shape"][1]
        (out,) = model.graph.output
        assert out.name == m["outputs"][0]["name"]
        assert out.type.tensor_type.shape.dim[0].dim_param
        ops = {n.op_type for n in model.graph.node}
        assert ops <= ALLOWED_OPS, f"unexpected ops {ops - ALLOWED_OPS}"
        assert "OneHot" not in ops
        budget = NODE_BUDGET.get(m["name"])
        if budget is not None:
            assert len(model.graph.node) <= budget, f"{m['name']}: {len(model.graph.node)} nodes > {budget}"


def test_golden_examples_reproduce(smoke_run):
    for pkg in smoke_run.packages:
        m = _load(pkg, "manifest.json")
        g = _load(pkg, "golden.json")
        in_name, out_name = m["inputs"][0]["name"], m["outputs"][0]["name"]
        x = np.array(g["inputs"][in_name], dtype=np.float32)
        want = np.array(g["outputs"][out_name], dtype=np.float32)
        assert len(x) == len(want) == len(g["notes"]) == m["golden"]["count"] >= 64
        assert {"all zeros", "max seen in training"} <= set(g["notes"])
        # real rows: held-out test rows, or data rows when the model trained on every row
        assert any(n.startswith(("test row", "data row")) for n in g["notes"])
        schema = _load(pkg, "feature_schema.json")
        for f in schema["features"]:
            if f["dtype"] == "category":
                for v in f["vocabulary"]:
                    assert f"{f['name']}={v}" in g["notes"]
        sess = ort.InferenceSession(str(pkg / "model.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run([out_name], {in_name: x})[0]
        assert got.shape == want.shape == (len(x), len(m["outputs"][0]["names"]))
        assert np.max(np.abs(got - want)) <= m["golden"]["tolerance"]
        # batch of one and a different batch size also work (symbolic batch)
        np.testing.assert_allclose(sess.run([out_name], {in_name: x[:1]})[0], want[:1], atol=1e-5)
        np.testing.assert_allclose(sess.run([out_name], {in_name: x[:7]})[0], want[:7], atol=1e-5)


def test_second_publish_of_a_version_is_refused(smoke_run):
    for pkg in smoke_run.packages:
        m = _load(pkg, "manifest.json")
        before = {p.name: p.read_bytes() for p in pkg.iterdir()}
        tampered = dict(before, **{"manifest.json": b"{}"})
        with pytest.raises(PackageExistsError):
            publish_files(smoke_run.models_dir, m["name"], m["version"], tampered)
        assert {p.name: p.read_bytes() for p in pkg.iterdir()} == before
        assert not list(pkg.parent.glob(".*")), "temporary folder left behind"


def test_schema_is_the_pipelines_file(smoke_run):
    """A package trained on pipeline data ships the pipeline's schema file byte for byte."""
    if smoke_run.data_dir is None:
        pytest.skip("notebook does not read pipeline data")
    sources = {p.read_bytes() for p in smoke_run.data_dir.glob("*/*.schema.json")}
    assert sources
    for pkg in smoke_run.packages:
        if _load(pkg, "manifest.json")["task"] == "segmentation":
            continue  # its input is the tags model's output, see test_segments_agree_with_the_analysis
        assert (pkg / "feature_schema.json").read_bytes() in sources


def test_segments_agree_with_the_analysis(smoke_run):
    """A segment package's argmin is the Rust analysis' segment of each user."""
    import pyarrow.parquet as pq

    checked = 0
    for pkg in smoke_run.packages:
        m = _load(pkg, "manifest.json")
        if m["task"] != "segmentation":
            continue
        source = m["segmentation"]["source"]
        path = lambda p: REPO_ROOT / p  # repository-relative, or absolute outside it
        tags = m["inputs"][0]["features"]
        scores = pq.read_table(path(source["tag_scores_file"]), columns=["user_id", *tags]).to_pandas()
        assigned = pq.read_table(path(source["segments_file"])).to_pandas().set_index("user_id")["segment"]
        assert len(assigned) == len(scores) == m["training_data"]["rows"]["train"]
        sample = scores.sample(n=min(500, len(scores)), random_state=0)
        sess = ort.InferenceSession(str(pkg / "model.onnx"), providers=["CPUExecutionProvider"])
        d = sess.run(["distances"], {"features": sample[tags].to_numpy(np.float32)})[0]
        assert d.shape == (len(sample), m["segmentation"]["k"]) and (d >= 0).all()
        np.testing.assert_array_equal(np.argmin(d, axis=1), assigned.loc[sample["user_id"]].to_numpy())
        # the golden data rows name their segment; each centroid is nearest to itself
        g = _load(pkg, "golden.json")
        out = np.array(g["outputs"]["distances"])
        for note, row in zip(g["notes"], out):
            found = re.search(r"segment (\d+)\)", note) or re.fullmatch(r"centroid of segment (\d+)", note)
            if found:
                assert int(np.argmin(row)) == int(found.group(1)), note
                checked += 1
        assert any(n == "all ones" for n in g["notes"]) and out.max() > 1.0  # distances, not clamped
    if not checked:
        pytest.skip("notebook publishes no segmentation package")

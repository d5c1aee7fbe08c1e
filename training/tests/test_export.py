"""Export of a tiny Keras model: parity check before writing, atomic publication, refusal."""

from __future__ import annotations

import numpy as np
import pytest

from liveprofile_training import export, golden, model
from liveprofile_training.package import PackageExistsError, verify_package
from liveprofile_training.schema import Feature, FeatureSchema, Label

SCHEMA = FeatureSchema(
    name="tiny",
    features=(
        Feature("watch_seconds", "float32", "seconds watched", "1d"),
        Feature("likes", "float32", "likes sent", "1d"),
        Feature("platform", "category", "platform", None, ("taobao", "douyin", "kuaishou")),
        Feature("follower", "bool", "follows the host"),
    ),
    labels=(Label("buy", "bought"), Label("cart", "added to cart")),
)


def _rows() -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.column_stack(
        [
            rng.exponential(60, 300),
            rng.poisson(2, 300),
            rng.integers(0, 3, 300),
            rng.integers(0, 2, 300),
        ]
    ).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    model.configure_tensorflow(11)
    X = _rows()
    Y = np.column_stack([X[:, 0] > 60, X[:, 1] > 2]).astype(np.int8)
    net = model.build_mlp(SCHEMA, X, outputs=2, hidden=(8,), log_features=["watch_seconds"], name="tiny")
    model.fit(net, X[:200], Y[:200], X[200:], Y[200:], epochs=2, batch_size=64)
    gold = golden.build_golden(lambda a: model.predict(net, a), SCHEMA, X[:200], X[200:], seed=1)
    return net, gold


def _export(net, gold, models_dir, **kw):
    args = dict(
        schema=SCHEMA,
        golden=gold,
        name="tiny",
        version=1,
        models_dir=models_dir,
        task="multi_label",
        output_names=SCHEMA.label_names,
        training_data={"description": "synthetic", "source": "test", "rows": {"train": 200, "test": 100}},
        metrics={"test": {}, "baselines": {}},
    )
    args.update(kw)
    return export.export_package(net, **args)


def test_golden_has_edge_cases(tiny):
    _, gold = tiny
    assert len(gold) >= 64
    assert gold.notes.count("all zeros") == 1
    assert {"platform=taobao", "platform=douyin", "platform=kuaishou"} <= set(gold.notes)
    assert gold.outputs.shape == (len(gold), 2)
    row = gold.inputs[gold.notes.index("platform=kuaishou")]
    assert row[2] == 2.0


def test_export_publish_verify_refuse(tiny, tmp_path):
    net, gold = tiny
    pkg = _export(net, gold, tmp_path)
    assert pkg == tmp_path / "tiny" / "1"
    summary = verify_package(pkg)
    assert summary["golden_max_abs_diff"] <= 1e-5
    # The served runtime (liveprofile.Model: the server's loading checks and plans) agrees.
    assert summary["served_max_abs_diff"] <= 1e-5
    assert set(summary["ops"]) <= {"Gather", "Relu", "Add", "Log", "Concat", "Sub", "Mul", "Equal",
                                   "Cast", "MatMul", "Gemm", "Sigmoid"}
    with pytest.raises(PackageExistsError):
        _export(net, gold, tmp_path)
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1"]


def test_nothing_is_written_when_onnx_and_golden_disagree(tiny, tmp_path):
    net, gold = tiny
    bad = golden.Golden(gold.inputs, gold.outputs + np.float32(1e-3), gold.notes)
    with pytest.raises(export.ParityError):
        _export(net, bad, tmp_path)
    assert not (tmp_path / "tiny").exists()


def test_onnx_only_parity_failure_writes_nothing(tiny, tmp_path, monkeypatch):
    net, gold = tiny
    real = export.check_parity

    def strict(model_bytes, g, tolerance):
        return real(model_bytes, g, tolerance=-1.0)  # every difference, even 0, is too much

    monkeypatch.setattr(export, "check_parity", strict)
    with pytest.raises(export.ParityError):
        _export(net, gold, tmp_path)
    assert not (tmp_path / "tiny").exists()


def test_the_drift_reference_of_the_training_rows_is_published_and_served(tiny, tmp_path):
    import json

    import liveprofile

    net, gold = tiny
    X = _rows()[:200]
    pkg = _export(net, gold, tmp_path, drift_rows=X, drift_description="tiny fit rows")
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["drift_reference"]["file"] == "drift_reference.json"
    verify_package(pkg)
    ref = json.loads((pkg / "drift_reference.json").read_text())
    assert (ref["rows"], ref["description"], ref["schema_hash"]) == (200, "tiny fit rows", SCHEMA.hash)
    assert [c["name"] for c in ref["features"]] == SCHEMA.feature_names
    assert [c["name"] for c in ref["outputs"]] == SCHEMA.label_names
    # The category and the bool get one bin per value; every column counts every row.
    platform = ref["features"][2]
    assert platform["edges"] == [0.0, 1.0, 2.0]
    assert platform["counts"][:3] == [int((X[:, 2] == v).sum()) for v in range(3)]
    assert ref["features"][3]["edges"] == [0.0, 1.0]
    assert all(sum(c["counts"]) + c["missing"] == 200 for c in ref["features"] + ref["outputs"])
    # The serving runtime loads it (checksum, fit to the schema and outputs).
    liveprofile.Model.load(pkg)
    # A changed reference fails verification.
    (pkg / "drift_reference.json").write_text(json.dumps(ref))
    with pytest.raises(Exception, match="drift_reference.sha256"):
        verify_package(pkg)

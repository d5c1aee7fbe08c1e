"""Lean models: folding for serving, Gemm fusion, Platt calibration, user splits, table reading."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from liveprofile_training import calibration, data, export, golden, model
from liveprofile_training.package import PackageError, run_onnx
from liveprofile_training.schema import (
    Feature,
    FeatureSchema,
    Label,
    SchemaError,
    load_feature_table,
    write_schema,
)

SCHEMA = FeatureSchema(
    name="lean_test",
    features=(
        Feature("platform", "category", "platform", None, ("taobao", "douyin", "kuaishou")),
        Feature("watch_seconds", "float32", "seconds watched", "1d"),
        Feature("likes", "float32", "likes", "1d"),
        Feature("constant", "float32", "always zero in training", "1d"),
        Feature("category", "category", "category", None, ("beauty", "food")),
    ),
    labels=(Label("buy", "bought"), Label("cart", "carted")),
)


def _data(n=600, seed=3):
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.integers(0, 3, n),
            rng.exponential(60, n),
            rng.poisson(2, n),
            np.zeros(n),
            rng.integers(0, 2, n),
        ]
    ).astype(np.float32)
    logit = 0.8 * (X[:, 0] == 1) - 0.5 * (X[:, 0] == 2) + 0.01 * X[:, 1] - 1.0 + 0.3 * X[:, 4]
    Y = np.column_stack([rng.random(n) < 1 / (1 + np.exp(-logit)), X[:, 2] > 2]).astype(np.int8)
    return X, Y


@pytest.fixture(scope="module")
def trained():
    X, Y = _data()
    model.configure_tensorflow(5)
    net = model.build_lean_mlp(SCHEMA, X[:400], outputs=2, hidden=(8, 4), wide=True, dropout=0.1, name="lean_test")
    model.warm_start_wide(net, X[:400], Y[:400], C=1.0)
    model.fit(net, X[:400], Y[:400], X[400:], Y[400:], epochs=3, batch_size=64)
    return net, X, Y


def test_category_encoding_is_an_invertible_map_of_one_hot():
    idx, offsets, names = model.lean_plan(SCHEMA)
    n = len(SCHEMA)
    assert idx[:n] == list(range(n)) and names[:n] == SCHEMA.feature_names
    assert names[n:n + 3] == ["platform>=taobao", "platform>=douyin", "platform>=kuaishou"]
    assert len(idx) == n + 3 + 2
    assert list(np.flatnonzero(model.lean_ignored(SCHEMA))) == [0, 4]
    for j, f in enumerate(SCHEMA.features):
        if not f.is_category:
            continue
        cols = [c for c, src in enumerate(idx) if src == j and c >= n]
        K = len(f.vocabulary)
        X = np.zeros((K, len(SCHEMA)), dtype=np.float32)
        X[:, j] = np.arange(K)
        G = model.lean_transform(X, idx, offsets)[:, cols]
        assert np.allclose(np.triu(G, 1), 0) and np.allclose(np.diag(G), np.log(2.0))
        assert np.linalg.matrix_rank(G) == K


def test_warm_start_equals_logistic_regression_before_training():
    X, Y = _data()
    model.configure_tensorflow(1)
    net = model.build_lean_mlp(SCHEMA, X, outputs=2, hidden=(4,), wide=True)
    model.warm_start_wide(net, X, Y, C=1.0)
    from sklearn.linear_model import LogisticRegression

    Z = model.standardised_inputs(net, X).astype(np.float64)
    want = LogisticRegression(C=1.0, max_iter=2000).fit(Z, Y[:, 0]).predict_proba(Z)[:, 1]
    np.testing.assert_allclose(model.predict(net, X)[:, 0], want, atol=1e-5)
    # the always-zero feature gets no weight
    Z = model.standardised_inputs(net, X)
    assert np.all(Z[:, [0, 3, 4]] == 0) and np.all(Z[:, [1, 2, 5, 6, 7, 8, 9]].std(axis=0) > 0.1)


def test_fold_for_serving_matches_calibrated_training_model(trained):
    net, X, _ = trained
    a, b = np.array([0.7, 1.3]), np.array([-0.2, 0.4])
    serving = model.fold_for_serving(net, (a, b), output_name="probability")
    want = calibration.apply_platt(model.predict_logits(net, X), a, b)
    np.testing.assert_allclose(model.predict(serving, X), want, atol=2e-6)
    names = [layer.name for layer in serving.layers]
    assert "standardise" not in names and "wide_logit" not in names
    # out-of-vocabulary and negative inputs still give probabilities
    odd = X[:3].copy()
    odd[:, 0] = [7, -1, 1.5]
    out = model.predict(serving, odd)
    assert np.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()


def test_gemm_fusion_keeps_outputs_and_drops_nodes(trained):
    net, X, _ = trained
    serving = model.fold_for_serving(net)
    plain = export.keras_to_onnx(serving, len(SCHEMA))
    fused = export.keras_to_onnx(serving, len(SCHEMA), fuse_gemm=True)
    plain_ops, fused_ops = export.op_types(plain), export.op_types(fused)
    assert "Gemm" not in plain_ops and plain_ops["MatMul"] == 4
    assert fused_ops["Gemm"] == 4 and "MatMul" not in fused_ops and "Gather" not in fused_ops
    assert export.graph_summary(fused)["nodes"] == export.graph_summary(plain)["nodes"] - 4
    # Gemm (category copies) Concat Relu Add Log (Gemm Relu) x2 Gemm Sigmoid
    assert [n.op_type for n in fused.graph.node] == [
        "Gemm", "Concat", "Relu", "Add", "Log", "Gemm", "Relu", "Gemm", "Relu", "Gemm", "Sigmoid",
    ]
    a = run_onnx(plain.SerializeToString(), {"features": X})["probability"]
    b = run_onnx(fused.SerializeToString(), {"features": X})["probability"]
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(b, model.predict(serving, X), atol=1e-5)


def test_export_copies_the_schema_file_byte_for_byte(trained, tmp_path):
    net, X, _ = trained
    serving = model.fold_for_serving(net)
    src = tmp_path / "t.schema.json"
    src.write_text(SCHEMA.dumps().rstrip("\n"), encoding="utf-8")  # no trailing newline
    gold = golden.build_golden(lambda A: model.predict(serving, A), SCHEMA, X[:400], X[400:])
    args = dict(
        schema=SCHEMA, golden=gold, name="lean_test", version=1, models_dir=tmp_path / "models",
        task="multi_label", output_names=SCHEMA.label_names,
        training_data={"description": "synthetic", "source": "test", "rows": {"train": 400, "test": 200}},
        metrics={"test": {}, "baselines": {}}, fuse_gemm=True,
    )
    other = tmp_path / "other.schema.json"
    other.write_text(json.dumps({**SCHEMA.to_json(), "features": SCHEMA.to_json()["features"][:-1], "hash": None}))
    with pytest.raises(PackageError, match="does not hold"):
        export.export_package(serving, schema_file=other, **args)
    pkg = export.export_package(serving, schema_file=src, **args)
    assert (pkg / "feature_schema.json").read_bytes() == src.read_bytes()


def test_restore_start_keeps_the_start_when_training_does_not_help():
    X, Y = _data()
    model.configure_tensorflow(2)
    net = model.build_lean_mlp(SCHEMA, X, outputs=2, hidden=(4,), wide=True)
    model.warm_start_wide(net, X[:400], Y[:400], C=1.0)
    start = [w.copy() for w in net.get_weights()]
    # A huge learning rate makes every epoch worse than the start.
    hist = model.fit(net, X[:400], Y[:400], X[400:], Y[400:], epochs=3, learning_rate=50.0, restore_start=True)
    assert hist.history["best_epoch"] == 0
    for w, s in zip(net.get_weights(), start):
        np.testing.assert_array_equal(w, s)


def test_fit_platt_recovers_known_parameters():
    rng = np.random.default_rng(0)
    s = rng.normal(0, 2, 50_000)
    y = rng.random(s.size) < 1 / (1 + np.exp(-(0.5 * s - 1.0)))
    a, b = calibration.fit_platt(s, y)
    assert abs(a - 0.5) < 0.03 and abs(b + 1.0) < 0.05
    from sklearn.linear_model import LogisticRegression

    ref = LogisticRegression(C=1e9, max_iter=1000).fit(s[:, None], y)
    assert abs(a - ref.coef_[0, 0]) < 1e-4 and abs(b - ref.intercept_[0]) < 1e-4
    with pytest.raises(ValueError):
        calibration.fit_platt(s, np.zeros_like(s))


def test_user_buckets_are_per_user_and_seeded():
    ids = np.array(["u1", "u2", "u1", "u3", "u2"])
    b = data.user_buckets(ids, 7)
    assert b[0] == b[2] and b[1] == b[4]
    assert not np.array_equal(b, data.user_buckets(ids, 8))
    many = data.user_buckets(np.array([f"u{i}" for i in range(20_000)]), 7)
    assert ((many >= 0) & (many < 1)).all() and abs((many < 0.2).mean() - 0.2) < 0.01
    train, test = data.user_split(ids, 0.5, 7)
    assert set(ids[train]).isdisjoint(ids[test]) and len(train) + len(test) == len(ids)


def test_table_with_a_shared_column_name_and_filtered_ids(tmp_path):
    schema = FeatureSchema(
        name="conv",
        features=(
            Feature("platform", "category", "platform", None, ("taobao", "douyin")),
            Feature("seconds", "float32", "seconds in room", None),
        ),
        labels=(Label("order", "ordered"),),
    )
    path = tmp_path / "conversion.parquet"
    arrays = [
        pa.array(["a", "b", "a", "c"]),
        pa.array(["douyin", "taobao", "taobao", "douyin"]),
        pa.array([1.0, 0.0, 0.0, 1.0], pa.float32()),
        pa.array([30.0, 120.0, 300.0, 30.0], pa.float32()),
        pa.array([0, 1, 0, 1], pa.int8()),
    ]
    table = pa.Table.from_arrays(arrays, names=["user_id", "platform", "platform", "seconds", "label_order"])
    pq.write_table(table, path, row_group_size=2)
    write_schema(schema, tmp_path / "conversion.schema.json")  # found beside the table
    got, loaded = load_feature_table(path, columns=["platform"])
    assert loaded == schema
    np.testing.assert_array_equal(got.X, [[1, 30], [0, 120], [0, 300], [1, 30]])
    assert list(got.extra["platform"]) == ["douyin", "taobao", "taobao", "douyin"]
    assert list(got.y[:, 0]) == [0, 1, 0, 1] and list(got.ids) == ["a", "b", "a", "c"]
    some, _ = load_feature_table(path, keep_ids=["a"], batch_rows=1)
    assert list(some.ids) == ["a", "a"] and some.X.shape == (2, 2)
    # the features must then form one block in schema order
    shuffled = pa.Table.from_arrays(
        [arrays[0], arrays[3], arrays[1], arrays[2], arrays[4]],
        names=["user_id", "seconds", "platform", "platform", "label_order"],
    )
    pq.write_table(shuffled, path)
    with pytest.raises(SchemaError, match="more than once"):
        load_feature_table(path)

"""Segment packages: report reading, the distance graph, golden examples, publication."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liveprofile_training import package, segments
from liveprofile_training.schema import Feature, FeatureSchema, Label

TAGS = ["a", "b", "c", "d"]


def _report(tmp_path, tags=TAGS, centroids=None, ids=None):
    rng = np.random.default_rng(1)
    centroids = rng.random((3, len(tags))) if centroids is None else np.asarray(centroids)
    ids = list(range(len(centroids))) if ids is None else ids
    segs = [
        {
            "id": i,
            "size": 10 * (3 - n),
            "share": (3 - n) / 6,
            "tags": [{"tag": t, "mean": 0.5, "lift": 2.0 - 0.5 * j} for j, t in enumerate(tags)],
            "centroid": list(map(float, centroids[n])),
        }
        for n, i in enumerate(ids)
    ]
    report = {
        "users": 60,
        "tags": tags,
        "segmentation": {
            "k": len(segs),
            "scores": [{"k": 2, "silhouette": 0.4, "inertia": 3.0}, {"k": 3, "silhouette": 0.5, "inertia": 2.0}],
            "inertia": 2.5,
            "segments": segs,
        },
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    return path, centroids


def test_report_is_read_in_segment_order_and_reordered_to_the_models_tags(tmp_path):
    path, centroids = _report(tmp_path)
    rep = segments.read_report(path)
    assert rep.k == 3 and rep.tags == TAGS and rep.scaling == "none"
    np.testing.assert_array_equal(rep.centroids, centroids)
    order = ["c", "a", "d", "b"]
    np.testing.assert_array_equal(segments.in_tag_order(rep, order), centroids[:, [2, 0, 3, 1]])
    with pytest.raises(segments.ReportError):
        segments.in_tag_order(rep, ["a", "b", "c", "x"])
    assert segments.describe(rep, 1) == "led by a (lift 2.00), b (lift 1.50); 33.3% of users"


def test_report_with_gaps_in_segment_ids_is_refused(tmp_path):
    path, _ = _report(tmp_path, ids=[0, 2, 3])
    with pytest.raises(segments.ReportError, match="segment ids"):
        segments.read_report(path)


def test_graph_gives_float64_distances_and_their_argmin():
    rng = np.random.default_rng(0)
    C = rng.random((5, 13))
    X = rng.random((2000, 13)).astype(np.float32)
    net = segments.build_model(C)
    d = np.asarray(net(X, training=False))
    exact = segments.squared_distances(X, C)
    assert d.shape == (2000, 5) and d.dtype == np.float32
    assert np.max(np.abs(d - exact)) < 2e-6
    agree = segments.agreement(d, np.argmin(exact, axis=1))
    assert agree["disagree"] == 0 and agree["agreement"] == 1.0
    # each centroid is at distance 0 (within float32) from itself
    own = np.asarray(net(C.astype(np.float32), training=False))
    assert np.all(np.argmin(own, axis=1) == np.arange(5)) and np.max(np.diag(own)) < 1e-6


def test_agreement_reports_the_margin_of_disagreements():
    d = np.array([[0.0, 1.0], [0.5, 0.5 + 1e-7], [2.0, 1.0]])
    a = segments.agreement(d, np.array([0, 1, 1]))
    assert (a["agree"], a["disagree"]) == (2, 1)
    assert a["margin_of_disagreements"] == pytest.approx(1e-7)
    assert a["smallest_gap_between_two_nearest"] == pytest.approx(1e-7)


def test_golden_examples_hold_the_edge_cases_and_the_segments(tmp_path):
    rng = np.random.default_rng(2)
    C = rng.random((3, 4))
    X = rng.random((100, 4)).astype(np.float32)
    ids = [f"u{i}" for i in range(100)]
    assigned = np.argmin(segments.squared_distances(X, C), axis=1)
    g = segments.build_golden(lambda A: segments.squared_distances(A, C), X, ids, C, assigned=assigned, seed=3)
    assert len(g) >= 64 and g.input_name == "features" and g.output_name == "distances"
    for note in ("all zeros", "all ones", "max seen in training", "centroid of segment 2", "midpoint of segments 0 and 2"):
        assert note in g.notes, note
    data_rows = [n for n in g.notes if n.startswith("data row")]
    assert sum("nearest a segment boundary" in n for n in data_rows) == 4
    for note, row in zip(g.notes, g.outputs):
        if note.startswith("data row"):
            i = int(note.split()[2])
            assert note.startswith(f"data row {i} (user_id u{i}, segment {assigned[i]})")
            assert int(np.argmin(row)) == assigned[i]


def test_a_segment_package_is_published_and_verified(tmp_path):
    """Smallest end-to-end export: task segmentation, extra manifest entry, verification."""
    from liveprofile_training import export

    path, centroids = _report(tmp_path)
    rep = segments.read_report(path)
    net = segments.build_model(rep.centroids, name="seg")
    X = np.random.default_rng(4).random((80, 4)).astype(np.float32)
    g = segments.build_golden(
        lambda A: np.asarray(net(A, training=False)), X, [str(i) for i in range(80)], rep.centroids
    )
    schema = FeatureSchema(
        name="tags", features=tuple(Feature(t, "float32") for t in TAGS),
        labels=tuple(Label(segments.segment_name(i)) for i in range(3)),
    )
    kwargs = dict(
        schema=schema, golden=g, name="seg", version=1, models_dir=tmp_path / "models",
        task=segments.TASK, output_names=schema.label_names, output_name="distances",
        training_data={"description": "d", "source": "s", "rows": {"train": 60, "test": 60}},
        metrics={"test": {}, "baselines": {}},
    )
    with pytest.raises(package.PackageError, match="replace standard"):
        export.export_package(net, **kwargs, extra_manifest={"task": "x"})
    segmentation = {"k": 3, "segments": [{"name": segments.segment_name(i), "description": f"s{i}"} for i in range(3)]}
    published = export.export_package(net, **kwargs, extra_manifest={"segmentation": segmentation})
    summary = package.verify_package(published)
    assert summary["golden_max_abs_diff"] <= 1e-5
    assert summary["served_max_abs_diff"] <= 1e-5
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["task"] == "segmentation" and manifest["segmentation"] == segmentation
    # A segmentation that does not name its segments is one the server refuses: so does the check.
    unnamed = export.export_package(net, **{**kwargs, "version": 2}, extra_manifest={"segmentation": {"k": 3}})
    with pytest.raises(package.PackageError, match="served runtime refuses the package.*segments"):
        package.verify_package(unnamed)
    assert manifest["outputs"][0] == {
        "name": "distances", "dtype": "float32", "shape": [-1, 3], "names": ["segment_0", "segment_1", "segment_2"],
    }

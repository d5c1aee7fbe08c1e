"""User segments as a model package: the k-means centroids of the Rust analysis as a graph.

``liveprofile analyze`` (crates/analysis) clusters users' tag-probability vectors, the
``user_tags`` model's outputs, with k-means and writes ``report.json`` (tags, k, the
centroids, each segment's tags by lift) and ``segments.parquet`` (each user's segment).
This module turns such a report into a Keras model that the runtime serves like any other
package:

* input ``features`` float32 [batch, n_tags]: the tag probabilities in the ``user_tags``
  manifest's tag order;
* output ``distances`` float32 [batch, k]: the squared Euclidean distance to each
  centroid, in the report's segment order; the segment is the argmin (the first one on a
  tie).

The analysis clusters the probabilities as they are (no centring or scaling), so the
graph applies none either. For each centroid ``c``: ``Sub`` (x - c), ``Mul`` (its square),
``MatMul`` with a column of ones (the sum over tags); then one ``Concat`` of the k columns.
The distances are computed term by term as ``sum((x - c)^2)`` (not ``|x|^2 - 2 x.c +
|c|^2``, which loses digits to cancellation in float32), and the graph stays
two-dimensional, which the runtime runs feature-major (a broadcast over a
``[batch, k, n]`` tensor ran at half onnxruntime's batch speed in tract).

:func:`run_pipeline` produces a report with the Rust binary (``liveprofile score --model
user_tags`` then ``liveprofile analyze``) from a user feature table of
``training/make_data.sh``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data import REPO_ROOT
from .golden import MIN_GOLDEN, Golden
from .package import sha256_file
from .schema import Feature, FeatureSchema, Label, load_schema

TASK = "segmentation"
INPUT_NAME = "features"
OUTPUT_NAME = "distances"
# The analysis only scales when the report says so; a report without the key clustered the
# raw probabilities (every report of crates/analysis so far).
NO_SCALING = "none"


class ReportError(ValueError):
    """A report cannot be turned into a segment model."""


@dataclass
class SegmentReport:
    """What the package needs from an analysis report."""

    path: Path
    tags: list[str]
    k: int
    centroids: np.ndarray  # float64 [k, n_tags], tag order of ``tags``, segment order
    segments: list[dict[str, Any]]  # the report's segment entries (id, size, share, tags, ...)
    scores: list[dict[str, Any]]  # silhouette and inertia of every k tried
    inertia: float
    users: int
    scaling: str

    def top_tags(self, segment: int, n: int = 3) -> list[dict[str, float]]:
        """The segment's ``n`` tags of highest lift (mean probability over the population's)."""
        return [
            {"tag": t["tag"], "mean": float(t["mean"]), "lift": float(t["lift"])}
            for t in self.segments[segment]["tags"][:n]
        ]


def read_report(path: str | Path) -> SegmentReport:
    """Reads ``report.json`` of ``liveprofile analyze``; checks the segment numbering."""
    path = Path(path)
    report = json.loads(path.read_text(encoding="utf-8"))
    seg = report["segmentation"]
    tags = list(report["tags"])
    k = int(seg["k"])
    segments = sorted(seg["segments"], key=lambda s: s["id"])
    if [s["id"] for s in segments] != list(range(k)):
        raise ReportError(f"{path}: segment ids {[s['id'] for s in segments]} are not 0..{k - 1}")
    centroids = np.array([s["centroid"] for s in segments], dtype=np.float64)
    if centroids.shape != (k, len(tags)) or not np.all(np.isfinite(centroids)):
        raise ReportError(f"{path}: centroids of shape {centroids.shape}, expected {(k, len(tags))}")
    return SegmentReport(
        path=path,
        tags=tags,
        k=k,
        centroids=centroids,
        segments=segments,
        scores=list(seg["scores"]),
        inertia=float(seg["inertia"]),
        users=int(report["users"]),
        scaling=str(seg.get("scaling", NO_SCALING)),
    )


def in_tag_order(report: SegmentReport, tags: Sequence[str]) -> np.ndarray:
    """The report's centroids with their columns in ``tags`` order (the model's input order)."""
    if sorted(report.tags) != sorted(tags):
        raise ReportError(
            f"the report's tags {report.tags} are not the model's tags {list(tags)}"
        )
    return report.centroids[:, [report.tags.index(t) for t in tags]]


# ---------------------------------------------------------------------------
# The pipeline


def liveprofile_binary() -> Path:
    """The ``liveprofile`` binary: ``LIVEPROFILE_BIN``, else ``<target>/release/liveprofile``."""
    given = os.environ.get("LIVEPROFILE_BIN")
    if given:
        path = Path(given)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        if not target.is_absolute():
            target = REPO_ROOT / target
        path = target / "release" / "liveprofile"
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"no liveprofile binary at {path}: cargo build --release -p liveprofile (or set LIVEPROFILE_BIN)"
        )
    return path


def _run(cmd: Sequence[str]) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def run_pipeline(
    users: str | Path,
    out_dir: str | Path,
    *,
    models_dir: str | Path,
    tags_model: str = "user_tags",
    tags_version: int | None = None,
    analyze_args: Sequence[str] = (),
    overwrite: bool = True,
) -> dict[str, Any]:
    """``liveprofile score`` the users with the tags model, then ``liveprofile analyze``.

    Writes ``out_dir/tag_scores.parquet`` and ``out_dir/report/`` (report.json,
    report.html, segments.parquet). The users' ``main_platform`` is kept for the report's
    platform mix when the table has it. Returns the paths and the commands run.
    """
    import pyarrow.parquet as pq

    binary = liveprofile_binary()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = out_dir / "tag_scores.parquet"
    report_dir = out_dir / "report"
    columns = set(pq.read_schema(users).names)
    keep = ["user_id"] + (["main_platform"] if "main_platform" in columns else [])
    model_ref = tags_model if tags_version is None else f"{tags_model}@{int(tags_version)}"
    score_cmd = [
        binary, "score", "--model", model_ref, "--models", models_dir, "--input", users,
        "--output", scores, "--keep", ",".join(keep),
    ] + (["--overwrite"] if overwrite else [])
    analyze_cmd = [binary, "analyze", "--input", scores, "--out", report_dir] + list(analyze_args)
    if "main_platform" in keep:
        analyze_cmd += ["--platform-column", "main_platform"]
    logs = [_run(score_cmd), _run(analyze_cmd)]
    return {
        "tag_scores": scores,
        "report": report_dir / "report.json",
        "segments": report_dir / "segments.parquet",
        "commands": [" ".join(str(c) for c in cmd) for cmd in (score_cmd, analyze_cmd)],
        "binary_version": _run([binary, "--version"]).strip(),
        "output": "".join(logs),
    }


def read_tag_scores(path: str | Path, tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """User ids and float32 [users, tags] of a batch-scorer output, columns in ``tags`` order."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["user_id", *tags])
    X = np.stack([table.column(t).to_numpy().astype(np.float32) for t in tags], axis=1)
    return table.column("user_id").to_numpy().astype(str), X


def read_assignments(path: str | Path) -> dict[str, int]:
    """``segments.parquet`` of the analysis: user id -> segment."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["user_id", "segment"])
    return dict(zip(table.column("user_id").to_pylist(), table.column("segment").to_pylist()))


# ---------------------------------------------------------------------------
# Schema, model, golden examples


def tag_schema(
    tags_manifest: dict[str, Any], tags_schema: FeatureSchema, report: SegmentReport
) -> FeatureSchema:
    """The input schema: the tags model's outputs as float32 features, one label per segment.

    Each feature's meaning is the tag's definition from the tags model's schema; each
    label (``segment_<id>``) says what the output column holds and names the segment's
    leading tags.
    """
    out = tags_manifest["outputs"][0]
    definitions = {lab.name: lab.definition for lab in tags_schema.labels}
    features = [
        Feature(
            name=tag,
            dtype="float32",
            meaning=(
                f"probability of the tag from {tags_manifest['name']} v{tags_manifest['version']} "
                f"(output {out['name']!r}): {definitions.get(tag, '')}".rstrip(": ")
            ),
            window=None,
        )
        for tag in out["names"]
    ]
    labels = [
        Label(
            name=segment_name(s),
            definition=(
                f"squared Euclidean distance from the tag probabilities to the centroid of segment {s} "
                f"({describe(report, s)}); the user's segment is the nearest centroid"
            ),
        )
        for s in range(report.k)
    ]
    return FeatureSchema(name=f"{tags_manifest['name']}_probabilities", features=tuple(features), labels=tuple(labels))


def segment_name(segment: int) -> str:
    """Output column name of a segment."""
    return f"segment_{int(segment)}"


def describe(report: SegmentReport, segment: int, n: int = 3) -> str:
    """``led by loyal_fan (lift 3.16), night_owl (lift 2.96); 17.9% of users``.

    The segment's tags over-represented in it (lift above 1) among its ``n`` highest, or
    its highest one when none is.
    """
    top = report.top_tags(segment, n)
    top = [t for t in top if t["lift"] > 1.0] or top[:1]
    lead = ", ".join(f"{t['tag']} (lift {t['lift']:.2f})" for t in top)
    return f"led by {lead}; {100 * report.segments[segment]['share']:.1f}% of users"


def build_model(centroids: np.ndarray, *, name: str = "user_segments"):
    """Keras model: ``features`` [batch, n] -> ``distances`` [batch, k] (float32 centroids)."""
    import keras
    import tensorflow as tf

    C = np.asarray(centroids, dtype=np.float32)
    _, n = C.shape

    class SquaredDistances(keras.layers.Layer):
        """sum over tags of (x - c)^2 for every centroid c."""

        def __init__(self, centroids, **kwargs):
            super().__init__(**kwargs)
            self.centroids = np.asarray(centroids, dtype=np.float32)

        def call(self, x):
            k, n = self.centroids.shape
            ones = tf.ones([n, 1], tf.float32)
            columns = []
            for c in self.centroids:
                diff = x - tf.constant(c)  # [batch, n]
                columns.append(tf.matmul(diff * diff, ones))  # [batch, 1]
            return tf.concat(columns, axis=1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self.centroids.shape[0])

    inp = keras.Input(shape=(n,), dtype="float32", name=INPUT_NAME)
    out = SquaredDistances(C, name=OUTPUT_NAME)(inp)
    return keras.Model(inp, out, name=name)


def squared_distances(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances in float64 (the analysis' arithmetic), [rows, k]."""
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(centroids, dtype=np.float64)
    return ((X[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)


def build_golden(
    predict,
    X: np.ndarray,
    ids: Sequence[str],
    centroids: np.ndarray,
    *,
    assigned: Sequence[int] | None = None,
    n_rows: int = 40,
    seed: int = 0,
    minimum: int = MIN_GOLDEN,
) -> Golden:
    """Seeded data rows plus edge cases, with ``predict``'s outputs.

    Edge cases: all zeros, all ones, the per-tag maxima seen in the data, each centroid
    (float32), the midpoint of every pair of centroids, and the users nearest to a
    boundary between two segments (smallest gap between their two nearest centroids).
    More data rows are taken if needed to reach ``minimum``. With ``assigned`` (the
    analysis' segment of each row) the note of a data row names its segment
    (``data row 17 (user_id u1, segment 2)``), so a reader of the package can check the
    argmin of its own outputs against the analysis.
    """
    X = np.asarray(X, dtype=np.float32)
    C = np.asarray(centroids, dtype=np.float32)
    k, n = C.shape
    rows = [np.zeros(n, np.float32), np.ones(n, np.float32), X.max(axis=0)]
    notes = ["all zeros", "all ones", "max seen in training"]
    for s in range(k):
        rows.append(C[s])
        notes.append(f"centroid of segment {s}")
    for a in range(k):
        for b in range(a + 1, k):
            rows.append(((C[a].astype(np.float64) + C[b]) / 2).astype(np.float32))
            notes.append(f"midpoint of segments {a} and {b}")
    d = np.sort(squared_distances(X, C), axis=1)

    def note(i: int) -> str:
        segment = "" if assigned is None else f", segment {int(assigned[i])}"
        return f"data row {i} (user_id {ids[i]}{segment})"

    for i in np.argsort(d[:, 1] - d[:, 0], kind="stable")[:4]:
        rows.append(X[i])
        notes.append(f"{note(int(i))}, nearest a segment boundary")
    n_rows = min(max(n_rows, minimum - len(rows)), X.shape[0])
    picked = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=n_rows, replace=False))
    inputs = np.concatenate([X[picked], np.stack(rows)], axis=0)
    notes = [note(int(i)) for i in picked] + notes
    golden = Golden(
        inputs=inputs,
        outputs=np.asarray(predict(inputs), dtype=np.float32),
        notes=notes,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
    )
    if len(golden) < minimum:
        raise ValueError(f"only {len(golden)} golden examples, need {minimum}")
    return golden


def agreement(distances: np.ndarray, assigned: np.ndarray) -> dict[str, float]:
    """How often argmin of ``distances`` is the analysis' segment; the closest calls.

    ``margin_of_disagreements``: for rows that disagree, the largest gap between the
    distance to the assigned centroid and the smallest distance (0 when all agree).
    """
    distances = np.asarray(distances, dtype=np.float64)
    assigned = np.asarray(assigned, dtype=np.int64)
    nearest = np.argmin(distances, axis=1)
    wrong = nearest != assigned
    ordered = np.sort(distances, axis=1)
    gaps = ordered[:, 1] - ordered[:, 0] if distances.shape[1] > 1 else np.full(len(distances), np.inf)
    rows = np.arange(len(assigned))
    return {
        "rows": int(len(assigned)),
        "agree": int((~wrong).sum()),
        "disagree": int(wrong.sum()),
        "agreement": float((~wrong).mean()) if len(assigned) else float("nan"),
        "margin_of_disagreements": float(
            (distances[rows, assigned] - ordered[:, 0])[wrong].max() if wrong.any() else 0.0
        ),
        "smallest_gap_between_two_nearest": float(gaps.min()) if len(gaps) else float("nan"),
    }


def source_of(report: SegmentReport) -> dict[str, Any]:
    """Where the segments come from: the report file, its sha256 and its settings."""
    return {
        "file": str(report.path),
        "sha256": sha256_file(report.path),
        "users": report.users,
        "k": report.k,
        "criterion": "mean silhouette on a fixed, evenly spread sample of users (highest wins)",
        "scaling": report.scaling,
    }


def load_tags_model(package: str | Path) -> tuple[dict[str, Any], FeatureSchema]:
    """Manifest and schema of the tags model the segments were computed on."""
    package = Path(package)
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    return manifest, load_schema(package / manifest["feature_schema"]["file"])

"""Keras -> ONNX export and package publication.

:func:`export_package` converts with tf2onnx (symbolic batch dimension), checks the
graph with ``onnx.checker``, compares onnxruntime with the Keras outputs on the golden
inputs, and only then writes the package and publishes it atomically (see
:mod:`liveprofile_training.package`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .golden import Golden
from .package import (
    DEFAULT_TOLERANCE,
    GOLDEN_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    PackageError,
    PackageExistsError,
    build_manifest,
    dumps_json,
    framework_versions,
    package_dir,
    publish_files,
    run_onnx,
    sha256_bytes,
)
from .schema import FeatureSchema

DEFAULT_OPSET = 17
BATCH_DIM = "batch"


class ParityError(AssertionError):
    """ONNX outputs differ from the Keras outputs by more than the tolerance."""


def keras_to_onnx(
    model,
    n_features: int,
    *,
    opset: int = DEFAULT_OPSET,
    input_name: str = "features",
    output_name: str = "probability",
    doc: str = "",
    fuse_gemm: bool = False,
):
    """Convert a single-input, single-output Keras model; returns an ``onnx.ModelProto``.

    The model is traced in inference mode over float32 [batch, n_features]. The graph
    input is ``input_name``, the output is renamed to ``output_name`` and both carry
    the symbolic batch dimension ``batch``. ``fuse_gemm`` turns each MatMul with a
    constant matrix followed by an Add of a constant bias into one Gemm
    (:func:`fuse_matmul_add`).
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, n_features], tf.float32, name=input_name)]

    @tf.function(input_signature=spec)
    def serve(features):
        return model(features, training=False)

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise PackageError(
            f"expected one input and one output, got {[i.name for i in graph.input]} -> "
            f"{[o.name for o in graph.output]}"
        )
    _rename_value(graph, graph.input[0].name, input_name)
    _rename_value(graph, graph.output[0].name, output_name)
    for vi in (graph.input[0], graph.output[0]):
        dims = vi.type.tensor_type.shape.dim
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM
    graph.name = model.name
    if fuse_gemm:
        fuse_matmul_add(proto)
    if doc:
        proto.doc_string = doc
    onnx.checker.check_model(proto, full_check=True)
    return proto


def fuse_matmul_add(proto) -> int:
    """Replace ``Add(MatMul(A, W), b)`` by ``Gemm(A, W, b)`` in place; returns the count.

    Only where W is a constant [K, N] initializer, b a constant of shape [N] or [1, N],
    A has rank 2 and the MatMul result feeds nothing else. Gemm computes the same
    A @ W + b, as one node.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(proto)
    ranks = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    uses = Counter(name for node in graph.node for name in node.input)
    uses.update(o.name for o in graph.output)
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}

    fused: dict[int, object] = {}
    dropped: set[int] = set()
    for position, node in enumerate(nodes):
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for m_name, b_name in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            mm_pos = producer.get(m_name)
            mm = None if mm_pos is None else nodes[mm_pos]
            if mm is None or mm.op_type != "MatMul" or uses[m_name] != 1 or b_name not in inits:
                continue
            a_name, w_name = mm.input
            if w_name not in inits or ranks.get(a_name) != 2:
                continue
            w = numpy_helper.to_array(inits[w_name])
            b = numpy_helper.to_array(inits[b_name])
            if w.ndim != 2 or b.dtype != w.dtype or b.shape not in ((w.shape[1],), (1, w.shape[1])):
                continue
            if b.ndim == 2:
                flat = numpy_helper.from_array(b.reshape(-1), name=f"{b_name}__gemm")
                graph.initializer.append(flat)
                b_name = flat.name
            fused[position] = helper.make_node(
                "Gemm", [a_name, w_name, b_name], list(node.output), name=f"{mm.name or node.name}__gemm"
            )
            dropped.add(mm_pos)
            break
    if not fused:
        return 0
    kept = []
    for position, node in enumerate(nodes):
        if position in dropped:
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(fused.get(position, node))
        kept.append(copy)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    return len(fused)


def graph_summary(proto) -> dict:
    """Node count and op types of the main graph (what the serving engine executes)."""
    counts = op_types(proto)
    return {"nodes": int(sum(counts.values())), "op_types": dict(sorted(counts.items()))}


def _rename_value(graph, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def op_types(proto) -> Counter:
    """Count of each ONNX op type in the main graph."""
    return Counter(node.op_type for node in proto.graph.node)


def format_op_types(proto) -> str:
    counts = op_types(proto)
    return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(counts.items()))


def check_parity(
    model_bytes: bytes, golden: Golden, tolerance: float = DEFAULT_TOLERANCE
) -> float:
    """Max abs difference between onnxruntime and the golden outputs; raises above tolerance."""
    got = run_onnx(model_bytes, {golden.input_name: golden.inputs})
    if golden.output_name not in got:
        raise ParityError(f"ONNX model has no output {golden.output_name!r} (has {list(got)})")
    out = got[golden.output_name]
    if out.shape != golden.outputs.shape:
        raise ParityError(f"ONNX output shape {out.shape} != golden {golden.outputs.shape}")
    diff = float(np.max(np.abs(out.astype(np.float64) - golden.outputs.astype(np.float64))))
    if not diff <= tolerance:
        worst = int(np.argmax(np.max(np.abs(out - golden.outputs), axis=1)))
        raise ParityError(
            f"ONNX vs Keras max abs diff {diff:.3g} > {tolerance:g} "
            f"(worst: {golden.notes[worst]})"
        )
    return diff


def export_package(
    model,
    *,
    schema: FeatureSchema,
    golden: Golden,
    name: str,
    version: int,
    models_dir: str | Path,
    task: str,
    output_names: Sequence[str],
    training_data: Mapping[str, Any],
    metrics: Mapping[str, Any],
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = DEFAULT_OPSET,
    output_name: str | None = None,
    fuse_gemm: bool = False,
    schema_file: str | Path | None = None,
    extra_manifest: Mapping[str, Any] | None = None,
    drift_rows: np.ndarray | None = None,
    drift_description: str = "",
) -> Path:
    """Convert, check and publish ``model`` as ``<models_dir>/<name>/<version>/``.

    Refuses an existing version before any work, and again at the atomic rename.
    Nothing is written unless ONNX matches Keras on the golden inputs.
    ``schema_file``: the schema file the data came with (e.g. the Rust pipeline's
    ``users.schema.json``), copied byte for byte once it is checked to hold ``schema``;
    without it the schema is written from ``schema``. ``extra_manifest``: more top-level
    manifest entries (see :func:`~liveprofile_training.package.build_manifest`).
    ``drift_rows``: the rows the model was fitted on (``[rows, features]`` in schema
    order); the package then carries their drift reference (``drift_reference.json``,
    see :func:`drift_reference_text`), named with its sha256 in the manifest.
    """
    schema_bytes = schema.dumps().encode("utf-8")
    if schema_file is not None:
        from .schema import load_schema

        if load_schema(schema_file) != schema:
            raise PackageError(f"{schema_file} does not hold the schema {schema.name!r} {schema.hash}")
        schema_bytes = Path(schema_file).read_bytes()
    dest = package_dir(models_dir, name, version)
    if dest.exists():
        raise PackageExistsError(f"{dest} already exists; publish a new version instead")
    output_name = output_name or golden.output_name
    if golden.output_name != output_name or golden.input_name != "features":
        raise PackageError("golden tensor names must be 'features' and the output name")
    if golden.inputs.shape[1] != len(schema):
        raise PackageError(f"golden inputs have {golden.inputs.shape[1]} columns, schema {len(schema)}")
    if golden.outputs.shape[1] != len(output_names):
        raise PackageError(
            f"golden outputs have {golden.outputs.shape[1]} columns, {len(output_names)} names given"
        )

    # The golden outputs must be this model's Keras outputs.
    keras_now = np.asarray(model(golden.inputs, training=False), dtype=np.float32)
    stale = float(np.max(np.abs(keras_now - golden.outputs)))
    if not stale <= tolerance:
        raise ParityError(f"golden outputs are not this model's Keras outputs (diff {stale:.3g})")

    proto = keras_to_onnx(
        model,
        len(schema),
        opset=opset,
        output_name=output_name,
        doc=f"{name} v{version}; feature schema {schema.name} {schema.hash}",
        fuse_gemm=fuse_gemm,
    )
    meta = {"liveprofile.name": name, "liveprofile.version": str(int(version)),
            "liveprofile.feature_schema_hash": schema.hash}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    model_bytes = proto.SerializeToString()
    check_parity(model_bytes, golden, tolerance)

    extra = dict(extra_manifest or {})
    drift_text = None
    if drift_rows is not None:
        drift_text = drift_reference_text(
            model_bytes, schema, output_name, output_names, drift_rows, drift_description
        )
        from liveprofile.drift import manifest_entry

        extra["drift_reference"] = manifest_entry(drift_text)
    manifest = build_manifest(
        name=name,
        version=version,
        task=task,
        schema=schema,
        output_name=output_name,
        output_names=output_names,
        training_data=training_data,
        metrics=metrics,
        framework=framework_versions(opset),
        onnx_sha256=sha256_bytes(model_bytes),
        golden_count=len(golden),
        tolerance=tolerance,
        extra=extra or None,
    )
    files = {
        MODEL_FILE: model_bytes,
        MANIFEST_FILE: dumps_json(manifest).encode("utf-8"),
        SCHEMA_FILE: schema_bytes,
        GOLDEN_FILE: golden.dumps().encode("utf-8"),
    }
    if drift_text is not None:
        from liveprofile.drift import REFERENCE_FILE

        files[REFERENCE_FILE] = drift_text.encode("utf-8")
    return publish_files(models_dir, name, version, files)


def drift_reference_text(
    model_bytes: bytes,
    schema: FeatureSchema,
    output_name: str,
    output_names: Sequence[str],
    rows: np.ndarray,
    description: str,
) -> str:
    """The drift reference of training ``rows``: every feature, and every output column the
    ONNX graph gives on them (named as the runtime names them: the output's name for one
    column, else its tag or class names), binned by ``liveprofile.drift`` (Rust)."""
    import pyarrow as pa
    from liveprofile import drift

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != len(schema):
        raise PackageError(f"drift rows have shape {rows.shape}, the schema {len(schema)} features")
    scored = run_onnx(model_bytes, {"features": rows})[output_name]
    names = [output_name] if len(output_names) <= 1 else list(output_names)
    features = pa.table({f.name: rows[:, j] for j, f in enumerate(schema.features)})
    outputs = pa.table({n: np.ascontiguousarray(scored[:, j]) for j, n in enumerate(names)})
    return drift.reference_json(
        outputs, features, description=description or f"{len(rows)} training rows", schema_hash=schema.hash
    )


def load_onnx(path: str | Path):
    import onnx

    return onnx.load(str(path))

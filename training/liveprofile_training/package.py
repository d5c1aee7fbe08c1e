"""Model packages: manifest, atomic publication and verification.

A package is the folder ``<models_dir>/<name>/<version>/`` holding ``model.onnx``,
``manifest.json``, ``feature_schema.json`` and ``golden.json``. It is assembled in a
hidden temporary folder beside its destination (``.<version>.tmp-*``) and published by
one rename that never replaces an existing version, so a watcher sees either no package
or a complete one.

Run ``python -m liveprofile_training.package verify <package dir>`` to check a package.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .golden import Golden
from .schema import FeatureSchema, SchemaError, load_schema

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
SCHEMA_FILE = "feature_schema.json"
GOLDEN_FILE = "golden.json"
PACKAGE_FILES = (MODEL_FILE, MANIFEST_FILE, SCHEMA_FILE, GOLDEN_FILE)
# Probability tasks (outputs in [0, 1]) and "segmentation" (squared distances to segment
# centroids, one column per segment; the segment is the nearest one).
TASKS = ("binary_classification", "multi_label", "segmentation")
DEFAULT_TOLERANCE = 1e-5
MANIFEST_KEYS = (
    "name",
    "version",
    "task",
    "created_at",
    "inputs",
    "outputs",
    "feature_schema",
    "training_data",
    "metrics",
    "framework",
    "onnx_sha256",
    "golden",
)


class PackageError(ValueError):
    """A package is incomplete or inconsistent."""


class PackageExistsError(FileExistsError):
    """The version is already published; versions are never overwritten."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def utc_now() -> str:
    """RFC 3339 UTC timestamp with second precision, e.g. ``2025-01-31T12:00:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def framework_versions(opset: int) -> dict[str, Any]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": int(opset),
    }


def json_safe(value: Any) -> Any:
    """Numpy scalars to Python numbers, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def build_manifest(
    *,
    name: str,
    version: int,
    task: str,
    schema: FeatureSchema,
    output_name: str,
    output_names: Sequence[str],
    training_data: Mapping[str, Any],
    metrics: Mapping[str, Any],
    framework: Mapping[str, Any],
    onnx_sha256: str,
    golden_count: int,
    tolerance: float = DEFAULT_TOLERANCE,
    input_name: str = "features",
    created_at: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest; ``extra`` adds top-level entries (e.g. ``segmentation``) after the
    standard ones, which it may not replace."""
    if task not in TASKS:
        raise PackageError(f"task {task!r} is not one of {TASKS}")
    if task == "binary_classification" and len(output_names) != 1:
        raise PackageError("a binary_classification model has exactly one output column")
    for key in ("description", "source", "rows"):
        if key not in training_data:
            raise PackageError(f"training_data lacks {key!r}")
    for key in ("test", "baselines"):
        if key not in metrics:
            raise PackageError(f"metrics lacks {key!r}")
    clashes = sorted(set(extra or {}) & set(MANIFEST_KEYS))
    if clashes:
        raise PackageError(f"extra manifest entries {clashes} would replace standard ones")
    return json_safe(
        {
            "name": name,
            "version": int(version),
            "task": task,
            "created_at": created_at or utc_now(),
            "inputs": [
                {
                    "name": input_name,
                    "dtype": "float32",
                    "shape": [-1, len(schema)],
                    "features": schema.feature_names,
                }
            ],
            "outputs": [
                {
                    "name": output_name,
                    "dtype": "float32",
                    "shape": [-1, len(output_names)],
                    "names": list(output_names),
                }
            ],
            "feature_schema": {"file": SCHEMA_FILE, "name": schema.name, "hash": schema.hash},
            "training_data": {**dict(training_data), "citation": training_data.get("citation")},
            "metrics": dict(metrics),
            "framework": dict(framework),
            "onnx_sha256": onnx_sha256,
            "golden": {"file": GOLDEN_FILE, "count": int(golden_count), "tolerance": tolerance},
            **dict(extra or {}),
        }
    )


def dumps_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------
# Publication


def package_dir(models_dir: str | Path, name: str, version: int) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise PackageError(f"bad model name {name!r}")
    if int(version) < 1:
        raise PackageError(f"version must be a positive integer, got {version!r}")
    return Path(models_dir) / name / str(int(version))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with PackageExistsError if ``dst`` exists."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = getattr(libc, "renameat2", None)
        if renameat2 is not None:
            renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            renameat2.restype = ctypes.c_int
            rc = renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
            if rc == 0:
                return
            err = ctypes.get_errno()
            if err == errno.EEXIST:
                raise PackageExistsError(f"{dst} already exists; publish a new version instead")
            if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise OSError(err, os.strerror(err), str(dst))
    # Fallback: check, then rename (a non-empty destination folder makes rename fail too).
    if os.path.lexists(dst):
        raise PackageExistsError(f"{dst} already exists; publish a new version instead")
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise PackageExistsError(f"{dst} already exists; publish a new version instead") from None
        raise


def publish_files(
    models_dir: str | Path, name: str, version: int, files: Mapping[str, bytes]
) -> Path:
    """Write ``files`` into ``<models_dir>/<name>/<version>/`` atomically; never overwrite."""
    dest = package_dir(models_dir, name, version)
    if os.path.lexists(dest):
        raise PackageExistsError(f"{dest} already exists; publish a new version instead")
    missing = [f for f in PACKAGE_FILES if f not in files]
    if missing:
        raise PackageError(f"package lacks {missing}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{int(version)}.tmp-", dir=dest.parent))
    try:
        for fname, data in files.items():
            with open(tmp / fname, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        _fsync_dir(tmp)
        _rename_noreplace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(dest.parent)
    return dest


# ---------------------------------------------------------------------------
# Verification


def _symbolic_batch(value_info) -> bool:
    dims = value_info.type.tensor_type.shape.dim
    return len(dims) >= 1 and bool(dims[0].dim_param) and not dims[0].HasField("dim_value")


def run_onnx(model_bytes: bytes, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(inputs))))


def verify_package(path: str | Path) -> dict[str, Any]:
    """Check a published package end to end; returns a summary, raises PackageError."""
    import onnx

    path = Path(path)
    for fname in PACKAGE_FILES:
        if not (path / fname).is_file():
            raise PackageError(f"{path}: missing {fname}")
    manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    lacking = [k for k in MANIFEST_KEYS if k not in manifest]
    if lacking:
        raise PackageError(f"{path}: manifest lacks {lacking}")
    problems: list[str] = []
    if str(manifest["version"]) != path.name or manifest["name"] != path.parent.name:
        problems.append(f"name/version {manifest['name']}/{manifest['version']} != folder {path.parent.name}/{path.name}")
    model_bytes = (path / MODEL_FILE).read_bytes()
    if sha256_bytes(model_bytes) != manifest["onnx_sha256"]:
        problems.append("onnx_sha256 does not match model.onnx")
    drift = manifest.get("drift_reference")
    if drift is not None:
        reference = path / drift["file"]
        if not reference.is_file():
            problems.append(f"drift reference {drift['file']} is missing")
        elif sha256_file(reference) != drift["sha256"]:
            problems.append(f"drift_reference.sha256 does not match {drift['file']}")
    try:
        schema = load_schema(path / SCHEMA_FILE)
    except SchemaError as exc:
        raise PackageError(str(exc)) from None
    if manifest["feature_schema"]["hash"] != schema.hash:
        problems.append("feature_schema.hash does not match the schema file")
    if manifest["feature_schema"]["name"] != schema.name:
        problems.append("feature_schema.name does not match the schema file")
    (inp,) = manifest["inputs"]
    (out,) = manifest["outputs"]
    if inp["features"] != schema.feature_names:
        problems.append("input features differ from the schema's features")
    if inp["shape"] != [-1, len(schema)] or inp["dtype"] != "float32":
        problems.append(f"input shape/dtype {inp['shape']}/{inp['dtype']}")
    if out["shape"] != [-1, len(out["names"])] or out["dtype"] != "float32":
        problems.append(f"output shape/dtype {out['shape']}/{out['dtype']}")

    proto = onnx.load_model_from_string(model_bytes)
    onnx.checker.check_model(proto, full_check=True)
    graph_inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if [i.name for i in graph_inputs] != [inp["name"]]:
        problems.append(f"graph inputs {[i.name for i in graph_inputs]} != [{inp['name']!r}]")
    elif not _symbolic_batch(graph_inputs[0]):
        problems.append("graph input has no symbolic batch dimension")
    if [o.name for o in proto.graph.output] != [out["name"]]:
        problems.append(f"graph outputs {[o.name for o in proto.graph.output]} != [{out['name']!r}]")

    golden = Golden.load(path / GOLDEN_FILE)
    tol = float(manifest["golden"]["tolerance"])
    if len(golden) != manifest["golden"]["count"]:
        problems.append(f"golden count {len(golden)} != manifest {manifest['golden']['count']}")
    if golden.input_name != inp["name"] or golden.output_name != out["name"]:
        problems.append("golden tensor names differ from the manifest")
    if golden.inputs.shape[1] != len(schema) or golden.outputs.shape[1] != len(out["names"]):
        problems.append("golden tensor widths differ from the manifest")
    max_diff = float("nan")
    if not problems:
        got = run_onnx(model_bytes, {inp["name"]: golden.inputs})[out["name"]]
        max_diff = float(np.max(np.abs(got.astype(np.float64) - golden.outputs)))
        if not max_diff <= tol:
            problems.append(f"golden max abs diff {max_diff:.3g} > tolerance {tol:g}")
    served_diff = float("nan")
    if not problems:
        served_diff = served_parity(path, golden)
        if not served_diff <= tol:
            problems.append(f"the served runtime's golden max abs diff {served_diff:.3g} > tolerance {tol:g}")
    if problems:
        raise PackageError(f"{path}: " + "; ".join(problems))
    return {
        "path": str(path),
        "name": manifest["name"],
        "version": manifest["version"],
        "features": len(schema),
        "outputs": out["names"],
        "golden": len(golden),
        "golden_max_abs_diff": max_diff,
        "served_max_abs_diff": served_diff,
        "tolerance": tol,
        "ops": sorted({n.op_type for n in proto.graph.node}),
    }


def served_parity(path: str | Path, golden: Golden) -> float:
    """Max abs difference between the golden outputs and the scores of the served runtime.

    The package is loaded with ``liveprofile.Model`` (the server's Rust runtime: its own
    checksum, schema and golden checks) and the golden inputs are scored through it, so a
    package that onnxruntime runs but the server would score differently is caught here.
    """
    import liveprofile

    try:
        model = liveprofile.Model.load(path)
    except liveprofile.ModelLoadError as exc:
        raise PackageError(f"the served runtime refuses the package: {exc}") from None
    scored = model.score(np.ascontiguousarray(golden.inputs, dtype=np.float32))
    got = np.column_stack([scored.column(name).to_numpy() for name in model.outputs])
    return float(np.max(np.abs(got.astype(np.float64) - golden.outputs.astype(np.float64))))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m liveprofile_training.package")
    sub = parser.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check model packages (folders with manifest.json)")
    v.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for p in args.paths:
        try:
            summary = verify_package(p)
        except (PackageError, OSError, ValueError) as exc:
            print(f"FAIL {p}: {exc}")
            status = 1
        else:
            print(f"ok   {p}: {summary['golden']} golden, max abs diff {summary['golden_max_abs_diff']:.3g}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())

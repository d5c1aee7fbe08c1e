"""Service benchmark: `liveprofile serve` beside Seldon MLServer serving the same ONNX
files through onnxruntime, both driven by `liveprofile loadgen` over KServe v2 with the
same callers, rows and duration; then liveprofile's own API, and p99 of the stable model
while a new version loads. Prints a Markdown table with the ratios.

Run: crates/server/python/setup_venv.sh && cargo build --release -p liveprofile &&
     crates/server/python/.venv/bin/python crates/server/python/bench/serve_vs_mlserver.py
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
HERE = Path(__file__).resolve().parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BINARY = TARGET / "release" / "liveprofile"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE.parent))
from servers import free_port, wait_ready  # noqa: E402


def publish(root: Path, model: str, version: int) -> None:
    staging = root / f".staging-{model}-{version}"
    shutil.copytree(REPO / "models" / model / "1", staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["version"] = version
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (root / model).mkdir(exist_ok=True)
    os.rename(staging, root / model / str(version))


def start_liveprofile(root: Path) -> tuple[str, subprocess.Popen]:
    addr = f"127.0.0.1:{free_port()}"
    p = subprocess.Popen(
        [str(BINARY), "serve", "--models", str(root), "--addr", addr,
         "--metrics-addr", f"127.0.0.1:{free_port()}",
         "--data-dir", str(root.parent / "profiles")],
        stderr=subprocess.DEVNULL,
    )
    wait_ready(addr, p)
    return addr, p


def start_mlserver(work: Path, models: list[str], workers: int) -> tuple[str, subprocess.Popen]:
    grpc_port = free_port()
    (work / "settings.json").write_text(json.dumps({
        "grpc_port": grpc_port, "http_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": workers, "host": "127.0.0.1", "debug": False,
    }))
    shutil.copy(HERE / "onnx_runtime.py", work / "onnx_runtime.py")
    for m in models:
        d = work / m
        d.mkdir()
        (d / "model-settings.json").write_text(json.dumps({
            "name": m, "implementation": "onnx_runtime.OnnxModel",
            "parameters": {"uri": str(REPO / "models" / m / "1" / "model.onnx"), "version": "1"},
        }))
    # With inference in the server process, onnxruntime gets every core; with worker
    # processes, one thread each.
    ort_threads = (os.cpu_count() or 1) if workers == 0 else 1
    env = dict(os.environ, PYTHONPATH=str(work), PEER_ORT_THREADS=str(ort_threads))
    p = subprocess.Popen([str(VENV_BIN / "mlserver"), "start", str(work)], cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    addr = f"127.0.0.1:{grpc_port}"
    wait_ready(addr, p)
    return addr, p


def load(target: str, protocol: str, model: str, batch: int, seconds: float, label: str,
         concurrency: int) -> dict:
    out = subprocess.run(
        [str(BINARY), "loadgen", "--target", target, "--protocol", protocol, "--model", model,
         "--package", str(REPO / "models" / model / "1"), "--batch", str(batch),
         "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", "2", "--label", label],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    # Human lines, then the JSON report last.
    print("\n".join(out[:-1]), flush=True)
    return json.loads(out[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    # MLServer 1.7.1's worker processes fail to start with the uvloop it installs ("no
    # current event loop"), so inference runs in the server process by default.
    ap.add_argument("--mlserver-workers", type=int, default=0)
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    models = ["user_tags", "conversion"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "models"
        root.mkdir()
        for m in models:
            publish(root, m, 1)
        (tmp / "mlserver").mkdir()
        lp_addr, lp = start_liveprofile(root)
        ml = None
        rows = []
        try:
            ml_addr, ml = start_mlserver(tmp / "mlserver", models, args.mlserver_workers)
            for model, batch in [("user_tags", 1), ("conversion", 1), ("user_tags", 100)]:
                a = load(lp_addr, "kserve", model, batch, args.seconds, "liveprofile", args.concurrency)
                b = load(ml_addr, "kserve", model, batch, args.seconds, "mlserver", args.concurrency)
                rows.append((f"KServe v2 ModelInfer, {model}, {batch} row(s)", a, b))
            native = []
            for protocol, model, batch in [("tags", "user_tags", 1), ("conversion", "conversion", 1),
                                           ("tags", "user_tags", 100)]:
                native.append((f"liveprofile.v1 {protocol}, {batch} row(s)",
                               load(lp_addr, protocol, model, batch, args.seconds, "liveprofile", args.concurrency)))
            # p99 of the stable model while a new version is published and loads.
            timer = threading.Timer(3.0, publish, (root, "user_tags", 2))
            timer.start()
            swap = load(lp_addr, "tags", "user_tags", 1, args.seconds, "liveprofile during load", args.concurrency)
            timer.join()
        finally:
            for p in (lp, ml):
                if p is None:
                    continue
                p.terminate()
                p.wait(timeout=30)
    print()
    print(f"{args.concurrency} concurrent callers over 2 connections, {args.seconds:.0f} s measured after 2 s warm-up, "
          f"{threads} cores shared by server and load generator; MLServer {args.mlserver_workers} worker(s), "
          f"onnxruntime {'all cores' if args.mlserver_workers == 0 else '1 thread per worker'}; liveprofile at its default inference threads (half the cores).")
    print()
    print("| call | liveprofile req/s | MLServer req/s | ratio | liveprofile p50 / p99 / p99.9 (us) | MLServer p50 / p99 / p99.9 (us) |")
    print("|---|---|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a['requests_per_s']:.0f} | {b['requests_per_s']:.0f} | "
              f"{a['requests_per_s'] / max(b['requests_per_s'], 1e-9):.1f}x | "
              f"{a['p50_us']:.0f} / {a['p99_us']:.0f} / {a['p999_us']:.0f} | "
              f"{b['p50_us']:.0f} / {b['p99_us']:.0f} / {b['p999_us']:.0f} |")
    print()
    print("| liveprofile.v1 call | req/s | rows/s | p50 / p99 / p99.9 (us) | errors |")
    print("|---|---|---|---|---|")
    for name, a in native + [("tags, 1 row, while user_tags/2 loads", swap)]:
        print(f"| {name} | {a['requests_per_s']:.0f} | {a['rows_per_s']:.0f} | "
              f"{a['p50_us']:.0f} / {a['p99_us']:.0f} / {a['p999_us']:.0f} | {a['errors']} |")
    errors = sum(r[1]["errors"] + r[2]["errors"] for r in rows) + sum(a["errors"] for _, a in native) + swap["errors"]
    if errors:
        sys.exit(f"{errors} failed requests")


if __name__ == "__main__":
    main()

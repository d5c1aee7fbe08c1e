"""Peer measurement for the scoring bench: onnxruntime on the same model and inputs.

Single-threaded session; single-row calls (p50, p99 over many calls) and batch-of-1024
throughput. Prints one JSON object. Run by `cargo bench -p liveprofile-runtime --bench
scoring` from the training virtual environment.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    model_path, width, calls, batch_reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(7)
    rows = rng.random((1024, width), dtype=np.float32)
    rows[:, :] = np.round(rows)  # category features take indices 0/1
    one = rows[:1].copy()
    for _ in range(200):
        sess.run(None, {name: one})
    times = []
    for i in range(calls):
        x = rows[i % 1024: i % 1024 + 1]
        t = time.perf_counter_ns()
        sess.run(None, {name: x})
        times.append(time.perf_counter_ns() - t)
    times.sort()
    for _ in range(3):
        sess.run(None, {name: rows})
    t = time.perf_counter()
    for _ in range(batch_reps):
        sess.run(None, {name: rows})
    batch_s = (time.perf_counter() - t) / batch_reps
    print(json.dumps({
        "single_p50_us": times[len(times) // 2] / 1000,
        "single_p99_us": times[int(len(times) * 0.99)] / 1000,
        "batch1024_rows_per_s": 1024 / batch_s,
    }))


if __name__ == "__main__":
    main()

"""In-process scoring of one Arrow table: liveprofile.Model.score against onnxruntime on the
same model and rows, side by side in one run.

    crates/python/.venv/bin/python crates/python/bench/in_process.py --rows 1000000

onnxruntime is timed twice: from the Arrow table (the columns gathered into the 2-D array it
takes, as a caller holding a table must do) and from a ready 2-D array (its best case).
liveprofile additionally checks every value as the server does. Each figure is the best of
``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import liveprofile
from common import REPO, feature_table, onnx_session


def best_of(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conversion")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    model_dir = REPO / "models" / args.model / "1"
    model = liveprofile.Model.load(model_dir)
    table = feature_table(model_dir, model.inputs, args.rows)
    session = onnx_session(model_dir, args.threads)
    input_name = session.get_inputs()[0].name

    def ort_from_table():
        x = np.column_stack([table.column(n).to_numpy() for n in model.inputs])
        return session.run(None, {input_name: x})

    ready = np.column_stack([table.column(n).to_numpy() for n in model.inputs])

    ours = model.score(table)
    theirs = session.run(None, {input_name: ready})[0]
    first = model.outputs[0]
    diff = float(np.max(np.abs(ours.column(first).to_numpy() - theirs[:, 0])))

    t_ours = best_of(args.repeat, lambda: model.score(table))
    t_table = best_of(args.repeat, ort_from_table)
    t_ready = best_of(args.repeat, lambda: session.run(None, {input_name: ready}))
    n = args.rows
    print(f"model {model.name}@{model.version}, {n:,} rows x {len(model.inputs)} features, {args.threads} threads")
    print(f"  liveprofile Model.score(table)      {t_ours:7.3f} s  {n / t_ours:12,.0f} rows/s")
    print(f"  onnxruntime from the Arrow table    {t_table:7.3f} s  {n / t_table:12,.0f} rows/s")
    print(f"  onnxruntime from a ready 2-D array  {t_ready:7.3f} s  {n / t_ready:12,.0f} rows/s")
    print(f"  ratio vs onnxruntime: {t_table / t_ours:.2f}x (from the table), {t_ready / t_ours:.2f}x (ready array)")
    print(f"  max |liveprofile - onnxruntime| = {diff:.2e}")


if __name__ == "__main__":
    main()

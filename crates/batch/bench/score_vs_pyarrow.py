"""Batch scoring benchmark: `liveprofile score` beside a pyarrow + onnxruntime script on
the same Parquet files of user features (1M and 10M rows, made by repeating the
simulator's user table with new ids), the same model, the same thread count. Reports rows
per second, the ratio, and each side's peak memory (max RSS).

Run (after training/make_data.sh, which writes training/data/sim/users.parquet):
    cargo build --release -p liveprofile
    training/.venv/bin/python crates/batch/bench/score_vs_pyarrow.py --rows 1000000 10000000
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BINARY = TARGET / "release" / "liveprofile"
HERE = Path(__file__).resolve().parent


def make_input(users: Path, rows: int, out: Path) -> None:
    """`rows` rows: the user table repeated, user ids made unique; 128k-row groups."""
    if out.exists() and pq.ParquetFile(out).metadata.num_rows == rows:
        return
    table = pq.read_table(users)
    table = table.drop_columns([c for c in table.column_names if c.startswith("label_")])
    tmp = out.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, table.schema, compression="snappy") as w:
        written, k = 0, 0
        while written < rows:
            part = table.slice(0, min(table.num_rows, rows - written))
            ids = pc.binary_join_element_wise(part.column("user_id"), pa.scalar(f"r{k}"), "-")
            part = part.set_column(0, table.schema.field("user_id"), ids.cast(pa.string()))
            w.write_table(part, row_group_size=131072)
            written += part.num_rows
            k += 1
    tmp.rename(out)


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of a command, from GNU time."""
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.stderr[-2000:]}")
    return seconds, int(p.stderr.strip().splitlines()[-1]) // 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--model", default="user_tags")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", default=str(REPO / "target" / "bench-batch"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    users = REPO / "training" / "data" / "sim" / "users.parquet"
    package = REPO / "models" / args.model / "1"
    results = []
    for rows in args.rows:
        data = work / f"users_{rows}.parquet"
        make_input(users, rows, data)
        ours_out, peer_out = work / f"ours_{rows}.parquet", work / f"peer_{rows}.parquet"
        for f in (ours_out, peer_out):
            f.unlink(missing_ok=True)
        ours = timed([str(BINARY), "score", "--model", f"{args.model}@1", "--models", str(REPO / "models"),
                      "--input", str(data), "--output", str(ours_out), "--keep", "user_id",
                      "--threads", str(args.threads)])
        peer = timed([sys.executable, str(HERE / "pyarrow_onnxruntime_peer.py"), "--package", str(package),
                      "--input", str(data), "--output", str(peer_out), "--keep", "user_id",
                      "--threads", str(args.threads)])
        a, b = pq.read_table(ours_out), pq.read_table(peer_out)
        assert a.num_rows == b.num_rows == rows
        diff = max(pc.max(pc.abs(pc.subtract(a.column(c), b.column(c)))).as_py()
                   for c in a.column_names if c not in ("user_id", "model", "model_version"))
        results.append((rows, ours, peer, diff))
        print(f"{rows} rows: liveprofile {rows / ours[0]:.0f} rows/s ({ours[1]} MiB), "
              f"pyarrow+onnxruntime {rows / peer[0]:.0f} rows/s ({peer[1]} MiB), max |diff| {diff:.2e}", flush=True)
    print()
    print(f"{args.model}, {args.threads} threads each, Parquet in and out, wall time including start-up:")
    print()
    print("| rows | liveprofile rows/s | pyarrow + onnxruntime rows/s | ratio | liveprofile peak RSS | peer peak RSS | max abs difference |")
    print("|---|---|---|---|---|---|---|")
    for rows, ours, peer, diff in results:
        print(f"| {rows:,} | {rows / ours[0]:,.0f} | {rows / peer[0]:,.0f} | {peer[0] / ours[0]:.2f}x | "
              f"{ours[1]} MiB | {peer[1]} MiB | {diff:.1e} |")


if __name__ == "__main__":
    main()

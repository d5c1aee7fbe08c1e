"""k-means beside scikit-learn: the same tag-score file, the same k, the same number of
initialisations (k-means++, at most 300 iterations, tolerance 1e-4). Runs
`liveprofile analyze --k K` (linfa) and sklearn.cluster.KMeans on every user, and reports
both inertias (sum of squared distances to the nearest centroid), their relative
difference and the fit times.

Run:
    cargo build --release -p liveprofile
    training/.venv/bin/python crates/analysis/bench/kmeans_vs_sklearn.py --input tag_scores.parquet --k 3
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.cluster import KMeans

REPO = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "liveprofile"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--n-init", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([str(BINARY), "analyze", "--input", args.input, "--out", out, "--k", str(args.k),
                        "--n-init", str(args.n_init)], check=True, capture_output=True)
        ours_total = time.perf_counter() - start
        seg = json.loads((Path(out) / "report.json").read_text())["segmentation"]
        tags = json.loads((Path(out) / "report.json").read_text())["tags"]
    table = pq.read_table(args.input, columns=tags)
    x = np.column_stack([table.column(t).to_numpy().astype(np.float64) for t in tags])
    start = time.perf_counter()
    km = KMeans(n_clusters=args.k, n_init=args.n_init, init="k-means++", max_iter=300, tol=1e-4,
                random_state=0).fit(x)
    sk_seconds = time.perf_counter() - start
    diff = (seg["inertia"] - km.inertia_) / km.inertia_
    print(f"{len(x)} users x {len(tags)} tags, k={args.k}, {args.n_init} initialisations")
    print(f"| | inertia | fit seconds |")
    print(f"|---|---|---|")
    print(f"| liveprofile (linfa) | {seg['inertia']:.2f} | {seg['fit_seconds']:.2f} (whole analyze run {ours_total:.1f} s) |")
    print(f"| scikit-learn {__import__('sklearn').__version__} | {km.inertia_:.2f} | {sk_seconds:.2f} |")
    print(f"relative inertia difference {100 * diff:+.3f}%, time ratio (sklearn / linfa) {sk_seconds / seg['fit_seconds']:.2f}x")
    if abs(diff) > 0.01:
        sys.exit("inertia differs by more than 1%")


if __name__ == "__main__":
    main()

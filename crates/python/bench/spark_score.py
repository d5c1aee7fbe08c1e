"""Spark local[2]: liveprofile.spark.score against the usual Spark approach (mapInPandas with
an onnxruntime session per worker), on the same cached DataFrame and partitions, side by side.

    crates/python/.venv/bin/python crates/python/bench/spark_score.py --rows 10000000

The rows cycle through the model's golden inputs (valid, realistic feature values). The
DataFrame is built, cached and counted before either run, so both read the same in-memory
partitions; both give the same columns (the id, the score, the model's name and version);
each run writes its scores to Spark's no-op sink (``format("noop")``), which
computes every row and keeps nothing. Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from common import REPO, golden_rows

_sessions = {}


def ort_scorer(model_path: str, features: list, output: str, model_name: str, version: int):
    def run(frames):
        import pandas as pd

        from common import onnx_session

        session = _sessions.get(model_path)
        if session is None:
            # One onnxruntime thread per Spark task: Spark runs one task per core.
            session = _sessions[model_path] = onnx_session(Path(model_path), 1)
        name = session.get_inputs()[0].name
        for frame in frames:
            x = frame[features].to_numpy(dtype=np.float32)
            y = session.run(None, {name: x})[0]
            yield pd.DataFrame(
                {"row_id": frame["row_id"].to_numpy(), output: y[:, 0], "model": model_name, "model_version": version}
            )

    return run


def timed(repeat: int, run) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conversion")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--memory", default="12g")
    args = parser.parse_args()

    os.environ["PYSPARK_PYTHON"] = sys.executable
    here = os.path.dirname(os.path.abspath(__file__))
    # The workers import `common` (the onnxruntime session) from this folder.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import liveprofile
    from liveprofile import spark as lp_spark

    model_dir = REPO / "models" / args.model / "1"
    model = liveprofile.Model.load(model_dir)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("liveprofile-spark-bench")
        .config("spark.driver.memory", args.memory)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    golden = golden_rows(model_dir)
    names = model.inputs
    rows = [(i, *map(float, golden[i])) for i in range(len(golden))]
    golden_df = spark.createDataFrame(rows, ["g", *names])
    for name in names:
        golden_df = golden_df.withColumn(name, F.col(name).cast("float"))
    df = (
        spark.range(0, args.rows, numPartitions=args.partitions)
        .withColumnRenamed("id", "row_id")
        .withColumn("g", F.col("row_id") % len(golden))
        .join(F.broadcast(golden_df), "g")
        .drop("g")
        .cache()
    )
    started = time.perf_counter()
    assert df.count() == args.rows
    print(f"built and cached {args.rows:,} rows x {len(names)} features in {args.partitions} partitions "
          f"in {time.perf_counter() - started:.1f} s")

    output = model.outputs[0]
    ours = lp_spark.score(df, str(model_dir), keep=["row_id"])
    # The same output columns as liveprofile's: the scores and the model's name and version on every row.
    theirs = df.mapInPandas(
        ort_scorer(str(model_dir), names, output, model.name, model.version),
        f"row_id long, {output} float, model string, model_version long",
    )
    t_ours = timed(args.repeat, lambda: ours.write.format("noop").mode("overwrite").save())
    t_theirs = timed(args.repeat, lambda: theirs.write.format("noop").mode("overwrite").save())
    n = args.rows
    print(f"model {model.name}@{model.version}, Spark local[2], {args.partitions} partitions")
    print(f"  liveprofile.spark.score (mapInArrow)      {t_ours:7.1f} s  {n / t_ours:12,.0f} rows/s")
    print(f"  mapInPandas + onnxruntime                 {t_theirs:7.1f} s  {n / t_theirs:12,.0f} rows/s")
    print(f"  ratio: {t_theirs / t_ours:.2f}x the rows per second")
    # The two agree (onnxruntime within the package's golden tolerance).
    peer = theirs.select("row_id", F.col(output).alias("peer"))
    sample = ours.join(peer, "row_id").limit(100_000).toArrow()
    diff = np.max(np.abs(sample.column(output).to_numpy() - sample.column("peer").to_numpy()))
    print(f"  max |liveprofile - onnxruntime| over {sample.num_rows:,} rows = {diff:.2e}")
    spark.stop()


if __name__ == "__main__":
    main()

"""The peer of `liveprofile score`: read Parquet with pyarrow, score with onnxruntime,
write Parquet, streaming record batches. Same columns out (kept columns, one per tag or
output, model name and version)."""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--keep", default="user_id")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-rows", type=int, default=65536)
    args = ap.parse_args()
    package = Path(args.package)
    manifest = json.loads((package / "manifest.json").read_text())
    features = manifest["inputs"][0]["features"]
    outputs = manifest["outputs"]
    keep = [k for k in args.keep.split(",") if k]
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(package / "model.onnx"), options, providers=["CPUExecutionProvider"])
    input_name = manifest["inputs"][0]["name"]
    names = []
    for o in outputs:
        names += [o["name"]] if len(o["names"]) <= 1 else o["names"]
    source = pq.ParquetFile(args.input)
    writer = None
    rows = 0
    for batch in source.iter_batches(batch_size=args.batch_rows, columns=keep + features):
        x = np.empty((batch.num_rows, len(features)), dtype=np.float32)
        for j, f in enumerate(features):
            x[:, j] = batch.column(f).to_numpy(zero_copy_only=False)
        scores = np.concatenate(session.run([o["name"] for o in outputs], {input_name: x}), axis=1)
        columns = {k: batch.column(k) for k in keep}
        columns.update({n: scores[:, i] for i, n in enumerate(names)})
        columns["model"] = pa.array([manifest["name"]] * batch.num_rows)
        columns["model_version"] = pa.array(np.full(batch.num_rows, manifest["version"], dtype=np.uint32))
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(args.output, table.schema, compression="snappy")
        writer.write_table(table)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    print(rows)


if __name__ == "__main__":
    main()

"""training/make_data.sh --small: the files the notebooks read, as the Rust pipeline wrote them.

The Taobao table of the small set comes from the synthetic file in training/datasets/; its
rows are checked against counts taken from that CSV directly. The figures of the real
Tianchi sample (and of the bundled taobao_purchase package trained on it) are checked only
when the real data set is present ($LIVEPROFILE_DATASETS, default ../shared/datasets).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import missing_real_dataset
from liveprofile_training import data, metrics
from liveprofile_training.package import run_onnx
from liveprofile_training.schema import load_feature_table, load_schema

pytestmark = pytest.mark.notebook

TAOBAO_CUTOFF = "2017-12-02T00:00:00+08:00"
TAOBAO_CUTOFF_MS = 1_512_144_000_000
TAOBAO_LABEL_WINDOW_MS = 2 * 86_400_000
HOUR_MS = 3_600_000
WINDOWS_MS = {"1h": HOUR_MS, "1d": 24 * HOUR_MS, "7d": 7 * 24 * HOUR_MS, "28d": 28 * 24 * HOUR_MS}
BEHAVIOUR_FEATURE = {"pv": "item_views", "fav": "favorites", "cart": "carts", "buy": "orders"}
# sha256 of the UCI file as published (training/datasets/README.md)
UCI_SHA256 = "b3055ee355f59134d851d32641183cb4a8b45def7124d2f50442a042f358e0d9"


def expected_from_csv(path: Path) -> dict[str, dict[str, int]]:
    """Per user with an event at or before the Taobao cut-off, computed from the CSV alone:
    the count of each behaviour in each window ending at the cut-off (open at the start,
    closed at the end) and ``buys_any`` (a buy in the 2 days after the cut-off)."""
    events = defaultdict(list)
    with open(path, newline="", encoding="ascii") as f:
        for user, _item, _category, behaviour, ts in csv.reader(f):
            events[user].append((behaviour, int(ts) * 1000))
    want = {}
    for user, evs in events.items():
        if not any(t <= TAOBAO_CUTOFF_MS for _, t in evs):
            continue  # no history at the cut-off: no row
        row = {
            f"{feature}_{w}": sum(b == behaviour and TAOBAO_CUTOFF_MS - span < t <= TAOBAO_CUTOFF_MS for b, t in evs)
            for behaviour, feature in BEHAVIOUR_FEATURE.items()
            for w, span in WINDOWS_MS.items()
        }
        row["buys_any"] = int(
            any(b == "buy" and TAOBAO_CUTOFF_MS < t <= TAOBAO_CUTOFF_MS + TAOBAO_LABEL_WINDOW_MS for b, t in evs)
        )
        want[user] = row
    return want


def test_make_data_writes_every_table(small_data):
    info = json.loads((small_data / "data.json").read_text(encoding="utf-8"))
    assert info["small"] is True
    assert info["taobao"]["synthetic"] is True and info["taobao"]["input"] == data.SYNTHETIC_TAOBAO_CSV.name
    assert info["simulate"]["days"] == 28 and info["simulate"]["start"] == "2026-11-02T00:00:00+08:00"
    users = load_schema(small_data / "sim" / "users.schema.json")
    conversion = load_schema(small_data / "sim" / "conversion.schema.json")
    taobao = load_schema(small_data / "taobao" / "users.schema.json")
    assert users.name == "user_features" and conversion.name == "conversion_features"
    assert taobao == users  # one user schema for simulated and real data
    assert "buys_any" in users.label_names and conversion.label_names == ["order"]
    truth = pq.read_schema(small_data / "sim" / "events.truth.parquet").names
    assert "user_id" in truth
    assert {f"p_{t}" for t in users.label_names if t != "buys_any"} <= set(truth)


def test_tables_load_in_schema_order(small_data):
    table, schema = load_feature_table(small_data / "sim" / "users.parquet")
    assert table.X.shape == (len(table), len(schema)) and len(table) > 1000
    assert table.y.shape[1] == len(schema.label_names)
    # Users whose labels cover a full 7-day window: as_of is the cut-off for everyone.
    as_of = pq.read_table(small_data / "sim" / "users.parquet", columns=["as_of_ms"]).column(0).to_numpy()
    assert (as_of == 1_795_363_200_000).all()  # 2026-11-23T00:00:00+08:00

    conv, cschema = load_feature_table(small_data / "sim" / "conversion.parquet", columns=["platform"])
    vocab = np.array(cschema.feature("platform").vocabulary)
    assert (vocab[conv.X[:, 0].astype(int)] == conv.extra["platform"]).all()
    assert 0.01 < conv.y.mean() < 0.06

    # the synthetic Taobao file: 150 users with history, 45 of them buy on 2-3 December
    # (the real sample's figures: test_real_taobao_sample_and_the_bundled_package)
    taobao, _ = load_feature_table(small_data / "taobao" / "users.parquet", labels=["buys_any"])
    as_of = pq.read_table(small_data / "taobao" / "users.parquet", columns=["as_of_ms"]).column(0).to_numpy()
    assert (as_of == TAOBAO_CUTOFF_MS).all()
    assert len(taobao) == 150 and 0.2 < taobao.y.mean() < 0.45


def test_user_split_is_the_same_in_every_table(small_data):
    users, _ = load_feature_table(small_data / "sim" / "users.parquet", labels=[])
    conv, _ = load_feature_table(small_data / "sim" / "conversion.parquet", labels=[])
    test_users = set(users.ids[data.user_buckets(users.ids, 7) < 0.2])
    conv_test = set(conv.ids[data.user_buckets(conv.ids, 7) < 0.2])
    assert conv_test <= test_users | (set(conv.ids) - set(users.ids))


def test_synthetic_taobao_file_is_the_generators_output(tmp_path):
    """The shipped test file is what its generator writes (so it can be remade and reviewed),
    in the UserBehavior format: five fields, digits, one of the four behaviours."""
    script = data.SYNTHETIC_TAOBAO_CSV.parent / "generate.py"
    out = tmp_path / "fresh.csv"
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == data.SYNTHETIC_TAOBAO_CSV.read_bytes(), f"run {script} to remake the file"
    lines = data.SYNTHETIC_TAOBAO_CSV.read_text(encoding="ascii").splitlines()
    assert 2_000 <= len(lines) <= 10_000
    pattern = re.compile(r"\d+,\d+,\d+,(pv|fav|cart|buy),\d{10}")
    assert all(pattern.fullmatch(line) for line in lines)


def test_taobao_table_counts_the_synthetic_files_rows(small_data):
    """liveprofile import taobao + features build on the synthetic file: one row per user
    with history at the cut-off, each behaviour counted in each window, buys_any from the
    2 days after the cut-off; the stray rows and the users who start after the cut-off are
    handled as the pipeline defines."""
    want = expected_from_csv(data.SYNTHETIC_TAOBAO_CSV)
    table, schema = load_feature_table(small_data / "taobao" / "users.parquet", labels=["buys_any"])
    assert sorted(table.ids) == sorted(want)
    columns = [c for c in next(iter(want.values())) if c != "buys_any"]
    assert set(columns) <= set(schema.feature_names)
    pos = [schema.feature_names.index(c) for c in columns]
    got = {uid: dict(zip(columns, row)) for uid, row in zip(table.ids, table.X[:, pos].astype(int).tolist())}
    for uid, label in zip(table.ids, table.y[:, 0].tolist()):
        got[uid]["buys_any"] = int(label)
    assert got == want
    # the file exercises every behaviour and both label values
    assert all(sum(r[f"{f}_28d"] for r in want.values()) > 0 for f in BEHAVIOUR_FEATURE.values())
    assert 0 < sum(r["buys_any"] for r in want.values()) < len(want)


def test_uci_copy_is_the_published_file():
    """The UCI file shipped for the tests is byte for byte the published data set."""
    raw = data.BUNDLED_UCI_CSV.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == UCI_SHA256
    assert raw.count(b"\n") == 12_331  # header and 12,330 sessions


def test_real_taobao_sample_and_the_bundled_package(liveprofile_bin, tmp_path):
    """On the real Tianchi sample (skipped when absent): 571 users, about a third of them
    buy on 2-3 December; the bundled taobao_purchase package was trained on exactly these
    rows: its row count and positive rate, the features of its golden data rows, and its
    in-sample ROC AUC and log loss, reproduced with onnxruntime."""
    reason = missing_real_dataset(data.TAOBAO_CSV)
    if reason:
        pytest.skip(reason)
    csv_path = data.dataset_file(data.TAOBAO_CSV)
    events, users = tmp_path / "events.parquet", tmp_path / "users.parquet"
    for args in (
        ["import", "taobao", "--input", str(csv_path), "--out", str(events)],
        ["features", "build", "--events", str(events), "--cutoff", TAOBAO_CUTOFF, "--label-window", "2d",
         "--out", str(users)],
    ):
        proc = subprocess.run([str(liveprofile_bin), *args], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"liveprofile {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    table, _ = load_feature_table(users, labels=["buys_any"])
    y = table.y[:, 0]
    assert len(table) == 571 and 0.2 < y.mean() < 0.45

    pkg = data.REPO_ROOT / "models" / "taobao_purchase" / "1"
    manifest = json.loads((pkg / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["training_data"]["rows"]["train"] == len(table)
    assert manifest["metrics"]["test"]["positive_rate"] == pytest.approx(y.mean(), abs=1e-12)
    golden = json.loads((pkg / "golden.json").read_text(encoding="utf-8"))
    row_of = {uid: i for i, uid in enumerate(table.ids)}
    checked = 0
    for note, x in zip(golden["notes"], golden["inputs"]["features"]):
        found = re.fullmatch(r"data row \d+ \(user_id (\S+)\)", note)
        if found:
            np.testing.assert_array_equal(table.X[row_of[found.group(1)]], np.array(x, dtype=np.float32), err_msg=note)
            checked += 1
    assert checked == 62
    p = run_onnx((pkg / "model.onnx").read_bytes(), {"features": table.X})["probability"][:, 0]
    in_sample = manifest["metrics"]["final_model_in_sample"]
    assert metrics.roc_auc(y, p) == pytest.approx(in_sample["roc_auc"], abs=1e-4)
    assert metrics.log_loss(y, p) == pytest.approx(in_sample["log_loss"], abs=1e-5)

"""training/make_data.sh --small: the files the notebooks read, as the Rust pipeline wrote them."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from liveprofile_training import data
from liveprofile_training.schema import load_feature_table, load_schema

pytestmark = pytest.mark.notebook


def test_make_data_writes_every_table(small_data):
    info = json.loads((small_data / "data.json").read_text(encoding="utf-8"))
    assert info["small"] is True
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

    taobao, _ = load_feature_table(small_data / "taobao" / "users.parquet", labels=["buys_any"])
    assert len(taobao) == 571 and 0.2 < taobao.y.mean() < 0.45


def test_user_split_is_the_same_in_every_table(small_data):
    users, _ = load_feature_table(small_data / "sim" / "users.parquet", labels=[])
    conv, _ = load_feature_table(small_data / "sim" / "conversion.parquet", labels=[])
    test_users = set(users.ids[data.user_buckets(users.ids, 7) < 0.2])
    conv_test = set(conv.ids[data.user_buckets(conv.ids, 7) < 0.2])
    assert conv_test <= test_users | (set(conv.ids) - set(users.ids))

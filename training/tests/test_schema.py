import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from liveprofile_training.schema import (
    Feature,
    FeatureSchema,
    Label,
    SchemaError,
    encode_frame,
    hash_lines,
    load_feature_table,
    load_schema,
    write_schema,
)

# A hand-written schema and the SHA-256 of its hash text, computed independently with
#   printf 'watch_seconds_7d\tfloat32\t7d\t\nplatform\tcategory\t\ttaobao|douyin|小红书\n'\
#          'is_follower\tbool\t\t\n' | sha256sum
HAND_SCHEMA = {
    "name": "hand_written",
    "version": 1,
    "features": [
        {"name": "watch_seconds_7d", "dtype": "float32", "meaning": "seconds watched", "window": "7d"},
        {
            "name": "platform",
            "dtype": "category",
            "meaning": "platform of the last event",
            "window": None,
            "vocabulary": ["taobao", "douyin", "小红书"],
        },
        {"name": "is_follower", "dtype": "bool", "meaning": "follows the host", "window": None},
    ],
    "labels": [{"name": "buy_7d", "definition": "orders within 7 days"}],
}
HAND_HASH = "a80972613263c8b13691f126fd408b25b3dfb21024f1788d1703b89ab3c03812"


def test_hash_of_hand_written_schema():
    schema = FeatureSchema.from_json(HAND_SCHEMA)
    assert schema.hash == HAND_HASH
    text = "watch_seconds_7d\tfloat32\t7d\t\nplatform\tcategory\t\ttaobao|douyin|小红书\nis_follower\tbool\t\t\n"
    assert hash_lines(schema.features) == text
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == HAND_HASH


def test_hash_ignores_meanings_and_labels_but_not_order_or_window():
    base = FeatureSchema.from_json(HAND_SCHEMA)
    edited = json.loads(json.dumps(HAND_SCHEMA))
    edited["features"][0]["meaning"] = "something else"
    edited["labels"] = []
    assert FeatureSchema.from_json(edited).hash == base.hash
    edited["features"][0]["window"] = "1d"
    assert FeatureSchema.from_json(edited).hash != base.hash
    swapped = json.loads(json.dumps(HAND_SCHEMA))
    swapped["features"].reverse()
    assert FeatureSchema.from_json(swapped).hash != base.hash


def test_write_and_load_round_trip(tmp_path):
    schema = FeatureSchema.from_json(HAND_SCHEMA)
    path = write_schema(schema, tmp_path / "feature_schema.json")
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["hash"] == HAND_HASH
    assert "vocabulary" not in stored["features"][0]
    assert stored["features"][1]["vocabulary"] == ["taobao", "douyin", "小红书"]
    again = load_schema(path)
    assert again == schema and again.label_names == ["buy_7d"]


def test_load_rejects_a_stale_hash(tmp_path):
    bad = dict(HAND_SCHEMA, hash="0" * 64)
    (tmp_path / "s.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(SchemaError, match="stored hash"):
        load_schema(tmp_path / "s.json")


@pytest.mark.parametrize(
    "feature, message",
    [
        ({"name": "x", "dtype": "int64"}, "dtype"),
        ({"name": "x", "dtype": "category"}, "vocabulary"),
        ({"name": "x", "dtype": "category", "vocabulary": ["a", "a"]}, "duplicates"),
        ({"name": "x", "dtype": "category", "vocabulary": ["a|b"]}, "'|'"),
        ({"name": "x", "dtype": "float32", "vocabulary": ["a"]}, "only category"),
    ],
)
def test_invalid_features_are_refused(feature, message):
    with pytest.raises(SchemaError, match=message):
        Feature.from_json(feature)


def _write_table(tmp_path, columns):
    pq.write_table(pa.table(columns), tmp_path / "features.parquet")
    write_schema(FeatureSchema.from_json(HAND_SCHEMA), tmp_path / "feature_schema.json")
    return tmp_path / "features.parquet"


def test_feature_table_in_schema_order(tmp_path):
    path = _write_table(
        tmp_path,
        {
            "user_id": pa.array([10, 11, 12], pa.int64()),
            "is_follower": pa.array([1, 0, 1], pa.float32()),
            "label_buy_7d": pa.array([0, 1, 1], pa.int8()),
            "watch_seconds_7d": pa.array([3.5, 0.0, 120.0], pa.float32()),
            "platform": pa.array([2, 0, 1], pa.float32()),
            "unused": pa.array([7, 7, 7], pa.int32()),
        },
    )
    table, schema = load_feature_table(path)
    assert table.X.dtype == np.float32 and table.X.shape == (3, 3)
    np.testing.assert_array_equal(table.X, [[3.5, 2, 1], [0, 0, 0], [120, 1, 1]])
    np.testing.assert_array_equal(table.y[:, 0], [0, 1, 1])
    assert table.label_names == ["buy_7d"] and list(table.ids) == [10, 11, 12]
    assert schema.hash == HAND_HASH


def test_feature_table_names_missing_columns(tmp_path):
    path = _write_table(
        tmp_path,
        {
            "user_id": pa.array([1], pa.int64()),
            "watch_seconds_7d": pa.array([1.0], pa.float32()),
            "label_buy_7d": pa.array([0], pa.int8()),
        },
    )
    with pytest.raises(SchemaError, match="lacks 2 schema feature.*platform, is_follower"):
        load_feature_table(path)


def test_feature_table_checks_category_indices(tmp_path):
    path = _write_table(
        tmp_path,
        {
            "watch_seconds_7d": pa.array([1.0], pa.float32()),
            "platform": pa.array([3.0], pa.float32()),
            "is_follower": pa.array([0.0], pa.float32()),
            "label_buy_7d": pa.array([0], pa.int8()),
        },
    )
    with pytest.raises(SchemaError, match="'platform'.*vocabulary of 3"):
        load_feature_table(path)


def test_feature_table_names_a_missing_label(tmp_path):
    path = _write_table(
        tmp_path,
        {
            "watch_seconds_7d": pa.array([1.0], pa.float32()),
            "platform": pa.array([0.0], pa.float32()),
            "is_follower": pa.array([0.0], pa.float32()),
        },
    )
    with pytest.raises(SchemaError, match="label_buy_7d"):
        load_feature_table(path)


def test_encode_frame_maps_categories_and_bools():
    schema = FeatureSchema.from_json(HAND_SCHEMA)
    frame = pd.DataFrame(
        {"watch_seconds_7d": [1, 2], "platform": ["小红书", "taobao"], "is_follower": ["TRUE", "FALSE"]}
    )
    enc = encode_frame(frame, schema)
    assert enc["platform"].tolist() == [2.0, 0.0]
    assert enc["is_follower"].tolist() == [1.0, 0.0]
    with pytest.raises(SchemaError, match="'platform'.*kuaishou"):
        encode_frame(frame.assign(platform=["kuaishou", "taobao"]), schema)


def test_label_column_name():
    assert Label("buy_7d").column == "label_buy_7d"

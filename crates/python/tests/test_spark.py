"""liveprofile.spark in local[2]: the CLI's scores and feature tables, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import liveprofile
from conftest import CUTOFF, LABEL_WINDOW, MODELS, read
from liveprofile import spark as lp_spark


def sorted_by(table, *keys):
    return table.sort_by([(k, "ascending") for k in keys])


def test_spark_score_equals_the_cli_bit_for_bit(cli, spark):
    expected = sorted_by(read(cli.score("user_tags", cli.features, "user_id,main_platform")), "user_id")
    df = spark.read.parquet(str(cli.features)).repartition(3)
    model = liveprofile.Model.load(MODELS / "user_tags" / "1")
    scored = lp_spark.score(df, str(MODELS / "user_tags" / "1"), keep=["user_id", "main_platform"])
    got = sorted_by(scored.toArrow(), "user_id")
    assert got.num_rows == expected.num_rows
    assert got.column_names == expected.column_names
    for name in model.outputs:
        a = got.column(name).to_numpy().view(np.uint32)
        b = expected.column(name).to_numpy().view(np.uint32)
        assert np.array_equal(a, b), name
    for name in ("user_id", "main_platform", "model"):
        assert got.column(name).to_pylist() == expected.column(name).to_pylist()
    assert set(got.column("model_version").to_pylist()) == {1}


def test_spark_build_features_equals_the_cli_table(cli, spark):
    expected = sorted_by(read(cli.features), "user_id")
    events = spark.read.parquet(str(cli.events))
    got = sorted_by(lp_spark.build_features(events, CUTOFF, LABEL_WINDOW).toArrow(), "user_id")
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows
    for name in expected.column_names:
        a, b = got.column(name), expected.column(name)
        if a.type == b.type and str(a.type) == "float":
            assert np.array_equal(a.to_numpy().view(np.uint32), b.to_numpy().view(np.uint32)), name
        else:
            assert a.to_pylist() == b.to_pylist(), name


def test_spark_refuses_missing_columns_and_uncovered_label_windows_on_the_driver(cli, spark):
    df = spark.read.parquet(str(cli.features)).drop("visits_1h")
    with pytest.raises(liveprofile.DataError, match="visits_1h"):
        lp_spark.score(df, str(MODELS / "user_tags" / "1"))
    with pytest.raises(liveprofile.ModelLoadError):
        lp_spark.score(df, str(MODELS / "user_tags" / "9"))
    events = spark.read.parquet(str(cli.events))
    with pytest.raises(liveprofile.DataError, match="the label window ends at"):
        lp_spark.build_features(events, CUTOFF, "30d")


def test_text_feature_columns_travel_by_name_and_nulls_name_their_column(cli, spark):
    from pyspark.sql import functions as F

    model_dir = str(MODELS / "user_tags" / "1")
    df = spark.read.parquet(str(cli.features)).limit(200)
    expected = sorted_by(lp_spark.score(df, model_dir, keep=["user_id"]).toArrow(), "user_id")
    as_text = df.withColumn("visits_1h", F.col("visits_1h").cast("string"))
    got = sorted_by(lp_spark.score(as_text, model_dir, keep=["user_id"]).toArrow(), "user_id")
    assert got.equals(expected)
    holed = df.withColumn("visits_1h", F.when(F.col("user_id") == df.first()["user_id"], None).otherwise(F.col("visits_1h")))
    with pytest.raises(Exception, match='column "visits_1h": missing value'):
        lp_spark.score(holed, model_dir, keep=["user_id"]).collect()

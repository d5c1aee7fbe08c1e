"""liveprofile.features and liveprofile.simulate: the CLI's tables and files, bit for bit."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import liveprofile
from conftest import CUTOFF, LABEL_WINDOW, SIM_DAYS, SIM_SEED, SIM_USERS, read
from liveprofile import features


def test_build_equals_the_cli_table_from_a_file_or_a_table(cli):
    expected = read(cli.features)
    from_path = features.build(cli.events, CUTOFF, LABEL_WINDOW)
    assert from_path.equals(expected)
    assert from_path.num_rows > 1_000
    events = read(cli.events)
    assert features.build(events, CUTOFF, LABEL_WINDOW).equals(expected)
    # Batches of any size are one event stream in arrival order.
    reader = pa.RecordBatchReader.from_batches(events.schema, events.to_batches(max_chunksize=777))
    assert features.build(reader, CUTOFF, LABEL_WINDOW).equals(expected)
    # The feature schema travels with the table.
    assert b"liveprofile.feature_schema" in from_path.schema.metadata


def test_times_and_windows_in_every_accepted_form_give_the_same_table(cli):
    expected = features.build(cli.events, CUTOFF, LABEL_WINDOW)
    cutoff = dt.datetime.fromisoformat(CUTOFF)
    ms = features.to_ms(CUTOFF)
    assert ms == int(cutoff.timestamp() * 1000)
    assert features.build(cli.events, cutoff, dt.timedelta(days=2)).equals(expected)
    assert features.build(cli.events, ms, "48h").equals(expected)
    unlabelled = features.build(cli.events, ms, None)
    assert [c for c in unlabelled.column_names if c.startswith("label_")] == []
    with pytest.raises(liveprofile.DataError, match="no time zone"):
        features.build(cli.events, dt.datetime(2026, 11, 6), "2d")
    with pytest.raises(liveprofile.DataError, match="expected like 7d"):
        features.build(cli.events, ms, "2 weeks")


def test_examples_equal_the_cli_table(cli):
    expected = pq.ParquetFile(cli.examples).read()  # two `platform` columns: read by position
    table, report = features.examples(cli.events, with_report=True)
    assert table.equals(expected)
    assert report["positives"] == sum(table.column("label_order").to_pylist())
    assert report["rejected"] == 0


def test_bad_rows_are_skipped_with_a_warning_or_refused_when_strict(cli):
    events = read(cli.events)
    kinds = events.column("kind").to_pylist()
    kinds[3] = "teleport"
    bad = events.set_column(events.schema.get_field_index("kind"), "kind", pa.array(kinds))
    with pytest.warns(UserWarning, match="1 rejected and 0 out-of-order events.*row 3"):
        table, report = features.build(bad, CUTOFF, LABEL_WINDOW, with_report=True)
    assert report["rejected"] == 1 and report["accepted"] == events.num_rows - 1
    with pytest.raises(liveprofile.DataError, match="1 rejected.*strict"):
        features.build(bad, CUTOFF, LABEL_WINDOW, strict=True)
    with pytest.raises(liveprofile.DataError, match="missing"):
        features.build(events.drop_columns(["platform"]), CUTOFF, LABEL_WINDOW)
    with pytest.raises(liveprofile.DataError, match="the label window ends at"):
        features.build(events, CUTOFF, "30d")


def test_simulate_writes_the_cli_files_bit_for_bit(cli, tmp_path):
    report = liveprofile.simulate(tmp_path / "events.parquet", users=SIM_USERS, days=SIM_DAYS, seed=SIM_SEED)
    assert report["users"] == SIM_USERS
    assert report["events"] == pq.read_metadata(cli.events).num_rows
    assert read(report["events_path"]).equals(read(cli.events))
    assert read(report["truth_path"]).equals(read(cli.root / "events.truth.parquet"))
    with pytest.raises(liveprofile.SimulationError, match="invalid configuration"):
        liveprofile.simulate(tmp_path / "none.parquet", users=0)

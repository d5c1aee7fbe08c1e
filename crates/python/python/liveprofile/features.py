"""Feature tables from event tables: the offline driver of ``liveprofile features``.

:func:`build` equals ``liveprofile features build`` and :func:`examples` equals
``liveprofile features examples`` on the same events (same rows, same bits); the tables carry
the feature schema JSON in their metadata under ``liveprofile.feature_schema``.

Events are a pyarrow Table, RecordBatch or RecordBatchReader with the event contract's columns
(other columns are ignored), or the path of an event Parquet file. Rows are taken in order as
arrival order: an event older than the user's newest accepted event by more than the allowed
lateness is rejected as out of order, as the CLI does.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from typing import Any, Dict, Optional, Tuple, Union

import pyarrow as pa
import pyarrow.parquet as pq

from . import _native
from ._native import DataError

__all__ = ["build", "examples", "to_ms", "window_ms", "EventsReport"]

Events = Union[pa.Table, pa.RecordBatch, pa.RecordBatchReader, str, "os.PathLike[str]"]
Time = Union[int, str, _dt.datetime]
Window = Union[str, _dt.timedelta, None]

#: What reading the events found: rows, accepted, rejected, out_of_order, first_rejected.
EventsReport = Dict[str, Any]

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


def to_ms(t: Time) -> int:
    """UTC milliseconds of ``t``: an integer (milliseconds), an RFC 3339 text such as
    ``2017-12-02T00:00:00+08:00``, or a timezone-aware datetime."""
    if isinstance(t, bool):
        raise TypeError("a time is milliseconds, RFC 3339 text or a datetime, not a bool")
    if isinstance(t, int):
        return t
    if isinstance(t, str):
        text = t.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise DataError(f"{t!r} is neither RFC 3339 (2017-12-02T00:00:00+08:00) nor UTC milliseconds") from None
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            raise DataError(f"{t!r} has no time zone; give one (liveprofile's data is in UTC milliseconds)")
        return int(round(t.timestamp() * 1000))
    raise TypeError(f"a time is milliseconds, RFC 3339 text or a datetime, not {type(t).__name__}")


def window_ms(w: Window) -> Optional[int]:
    """Milliseconds of a window: ``7d``, ``48h``, a timedelta, or ``None``/``"none"`` for none."""
    if w is None or (isinstance(w, str) and w.strip() == "none"):
        return None
    if isinstance(w, _dt.timedelta):
        ms = int(w.total_seconds() * 1000)
    elif isinstance(w, str):
        text = w.strip()
        unit = {"d": _DAY_MS, "h": _HOUR_MS}.get(text[-1:])
        if unit is None or not text[:-1].isdigit():
            raise DataError(f"window {w!r}: expected like 7d, 48h or none")
        ms = int(text[:-1]) * unit
    else:
        raise TypeError(f"a window is text like 7d, a timedelta or None, not {type(w).__name__}")
    if ms <= 0:
        raise DataError(f"window {w!r} must be positive")
    return ms


def _events_stream(events: Events) -> Any:
    if isinstance(events, (str, os.PathLike)):
        return pq.read_table(os.fspath(events))
    if isinstance(events, pa.RecordBatch):
        return pa.Table.from_batches([events])
    if isinstance(events, (pa.Table, pa.RecordBatchReader)) or hasattr(events, "__arrow_c_stream__"):
        return events
    raise TypeError(f"events are a pyarrow Table, RecordBatch, RecordBatchReader or a Parquet path, not {type(events).__name__}")


def _checked(report: EventsReport, strict: bool) -> None:
    bad = report["rejected"] + report["out_of_order"]
    if not bad:
        return
    listed = "; ".join(report["first_rejected"])
    message = (
        f"{report['rejected']} rejected and {report['out_of_order']} out-of-order events of {report['rows']}"
        + (f" (first: {listed})" if listed else "")
    )
    if strict:
        raise DataError(message + " (strict)")
    warnings.warn(message, stacklevel=3)


def build(
    events: Events,
    cutoff: Time,
    label_window: Window = "7d",
    *,
    strict: bool = False,
    with_report: bool = False,
) -> Union[pa.Table, Tuple[pa.Table, EventsReport]]:
    """The user feature table as of ``cutoff`` (inclusive), with labels from the
    ``label_window`` after it (``None`` for no labels): ``liveprofile features build``.

    Rows that break the event contract, and out-of-order events, are skipped with a warning
    (``strict=True`` raises :class:`DataError` instead); ``with_report=True`` also returns
    what reading the events found.
    """
    table, report = _native.user_table(_events_stream(events), to_ms(cutoff), window_ms(label_window))
    _checked(report, strict)
    return (table, report) if with_report else table


def examples(
    events: Events,
    *,
    from_: Optional[Time] = None,
    to: Optional[Time] = None,
    strict: bool = False,
    with_report: bool = False,
) -> Union[pa.Table, Tuple[pa.Table, EventsReport]]:
    """Conversion examples: room visits entered in ``[from_, to)`` at their decision points,
    labelled by whether they end in an order (``liveprofile features examples``). Earlier
    events are history. ``with_report=True`` also returns what reading the events found, with
    the number of ``positives``.
    """
    table, positives, report = _native.examples_table(
        _events_stream(events),
        None if from_ is None else to_ms(from_),
        None if to is None else to_ms(to),
    )
    _checked(report, strict)
    report["positives"] = positives
    return (table, report) if with_report else table

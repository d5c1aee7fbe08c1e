"""Parity of the experiment report with scipy and numpy on the report's own per-user table.

``liveprofile experiment report --experiment FILE --events EVENTS --exposures EXPOSURES
--out DIR`` writes ``report.json``, ``report.html`` and ``users.parquet`` (one row per
exposed user: ``arm`` and, for every metric, ``<metric>_num``, ``<metric>_den``,
``<metric>_pre_num``, ``<metric>_pre_den``). Every figure of ``report.json`` is recomputed
here from ``users.parquet`` and must agree to 1e-9:

- per-user metrics: ``scipy.stats.ttest_ind(equal_var=False)`` (t, Welch df, p, interval);
- ratio metrics: the delta method (Deng, Knoblich, Lu, KDD 2018) in numpy, normal test;
- relative lift and its interval by the delta method;
- CUPED: theta = cov(Y, X) / var(X) over all users, on the linearised values for ratios;
- GMV per user winsorised at ``np.quantile(..., 0.999)`` (linear interpolation);
- sample-ratio mismatch: ``scipy.stats.chisquare`` against the configured shares.

The report comes from the command on simulator data (with a planted +15% on orders per
visit when the simulator takes ``--experiment``; otherwise exposures are written here from
the events), or from an existing folder named by ``$LIVEPROFILE_EXPERIMENT_REPORT_DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from liveprofile_training import data

RTOL = 1e-9
ATOL = 1e-12
ALPHA = 0.05
METRICS = [
    "orders_per_visit",
    "gmv_per_user",
    "orders_per_user",
    "watch_minutes_per_visit",
    "interactions_per_visit",
    "repurchase_rate",
    "cross_platform_rate",
]
RATIO = {"orders_per_visit", "watch_minutes_per_visit", "interactions_per_visit"}

DAY_MS = 86_400_000
SIM_START_MS = 1_793_548_800_000  # 2026-11-02 00:00 +08:00, the simulator's default
EXPERIMENT_START_MS = SIM_START_MS + 7 * DAY_MS
EXPERIMENT_END_MS = SIM_START_MS + 21 * DAY_MS
EXPERIMENT = f"""
name = "parity"
salt = "parity-salt"
primary = "orders_per_visit"
guardrails = ["watch_minutes_per_visit"]
start = {EXPERIMENT_START_MS}
end = {EXPERIMENT_END_MS}
covariate_days = 7

[[arms]]
name = "control"
share = 50

[[arms]]
name = "treatment"
share = 50
"""


# --- reference computations ------------------------------------------------------------------


def welch(t: np.ndarray, c: np.ndarray, alpha: float = ALPHA) -> dict:
    r = stats.ttest_ind(t, c, equal_var=False)
    ci = r.confidence_interval(1 - alpha)
    return {
        "difference": float(t.mean() - c.mean()),
        "p_value": float(r.pvalue),
        "df": float(r.df),
        "difference_ci_low": float(ci.low),
        "difference_ci_high": float(ci.high),
        "std_error": float(np.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c))),
    }


def delta_ratio(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """R = mean(Y)/mean(X) and Var(R) = (1/n)[s_Y^2/mu_X^2 - 2 mu_Y s_XY/mu_X^3 + mu_Y^2 s_X^2/mu_X^4]."""
    n = len(y)
    my, mx = y.mean(), x.mean()
    vy, vx = y.var(ddof=1), x.var(ddof=1)
    cxy = np.cov(y, x, ddof=1)[0, 1]
    return float(my / mx), float((vy / mx**2 - 2 * my * cxy / mx**3 + my**2 * vx / mx**4) / n)


def z_test(difference: float, variance: float, alpha: float = ALPHA) -> dict:
    se = np.sqrt(variance)
    q = stats.norm.ppf(1 - alpha / 2)
    return {
        "difference": difference,
        "p_value": float(2 * stats.norm.sf(abs(difference / se))),
        "df": None,
        "difference_ci_low": difference - q * se,
        "difference_ci_high": difference + q * se,
        "std_error": float(se),
    }


def relative_lift(t: float, var_t: float, c: float, var_c: float, alpha: float = ALPHA) -> dict:
    """Delta = t/c - 1, Var ~ (t/c)^2 [Var_t/t^2 + Var_c/c^2] (written to hold at t = 0)."""
    se = np.sqrt(var_t / c**2 + t**2 * var_c / c**4)
    q = stats.norm.ppf(1 - alpha / 2)
    lift = t / c - 1
    return {"lift": lift, "ci_low": lift - q * se, "ci_high": lift + q * se}


def linearise(y: np.ndarray, x: np.ndarray, ratio: float, mean_x: float) -> np.ndarray:
    return ratio + (y - ratio * x) / mean_x


def compare_values(t: np.ndarray, c: np.ndarray, test: str) -> dict:
    """Treatment against control on per-user values (Welch) or linearised ratios (normal)."""
    mt, mc = float(t.mean()), float(c.mean())
    vt, vc = t.var(ddof=1) / len(t), c.var(ddof=1) / len(c)
    out = welch(t, c) if test == "welch" else z_test(mt - mc, vt + vc)
    return {"mean": mt, "control_mean": mc, **out, **relative_lift(mt, vt, mc, vc)}


def compare_metric(metric: str, t: dict, c: dict) -> dict:
    if metric in RATIO:
        rt, vt = delta_ratio(t["y"], t["x"])
        rc, vc = delta_ratio(c["y"], c["x"])
        return {"mean": rt, "control_mean": rc, **z_test(rt - rc, vt + vc), **relative_lift(rt, vt, rc, vc)}
    return compare_values(t["y"], c["y"], "welch")


def cuped(metric: str, arms: dict[str, dict]) -> tuple[float, dict[str, np.ndarray]]:
    """theta over all users and every arm's adjusted values."""
    if metric in RATIO:
        pre_y = np.concatenate([a["pre_y"] for a in arms.values()])
        pre_x = np.concatenate([a["pre_x"] for a in arms.values()])
        pre_ratio, pre_mean_x = pre_y.mean() / pre_x.mean(), pre_x.mean()
        post = {k: linearise(a["y"], a["x"], a["y"].mean() / a["x"].mean(), a["x"].mean()) for k, a in arms.items()}
        pre = {k: linearise(a["pre_y"], a["pre_x"], pre_ratio, pre_mean_x) for k, a in arms.items()}
    else:
        post = {k: a["y"] for k, a in arms.items()}
        pre = {k: a["pre_y"] for k, a in arms.items()}
    y = np.concatenate(list(post.values()))
    x = np.concatenate(list(pre.values()))
    theta = np.cov(y, x, ddof=1)[0, 1] / x.var(ddof=1)
    return float(theta), {k: post[k] - theta * (pre[k] - x.mean()) for k in post}


def srm(observed: list[int], shares: list[float]) -> float:
    n = sum(observed)
    expected = [n * s / sum(shares) for s in shares]
    return float(stats.chisquare(observed, expected).pvalue)


def by_arm(table: pa.Table, metric: str) -> dict[str, dict]:
    arm = np.asarray(table.column("arm").to_pylist())
    cols = {
        "y": f"{metric}_num",
        "x": f"{metric}_den",
        "pre_y": f"{metric}_pre_num",
        "pre_x": f"{metric}_pre_den",
    }
    values = {k: table.column(v).to_numpy() for k, v in cols.items()}
    return {name: {k: v[arm == name] for k, v in values.items()} for name in dict.fromkeys(arm.tolist())}


# --- comparison with the report ------------------------------------------------------------------


def assert_figures(got: dict, want: dict, what: str) -> None:
    for key, expected in want.items():
        value = got.get(key)
        if expected is None:
            assert value is None, f"{what}: {key} = {value}, expected null"
            continue
        assert value is not None, f"{what}: {key} is null ({got.get('reason')})"
        np.testing.assert_allclose(value, expected, rtol=RTOL, atol=ATOL, err_msg=f"{what}: {key}")


def check_report(report: dict, table: pa.Table) -> int:
    """Asserts every recomputable figure; returns how many metric entries were checked."""
    arms = [a["name"] for a in report["arms"]]
    control = arms[0]
    arm_column = np.asarray(table.column("arm").to_pylist())
    counts = [int(np.sum(arm_column == a)) for a in arms]
    assert [a["users"] for a in report["arms"]] == counts
    np.testing.assert_allclose(report["srm"]["p_value"], srm(counts, [a["share"] for a in report["arms"]]), rtol=RTOL)
    assert report["srm"]["flag"] == (report["srm"]["p_value"] < report["srm_alpha"])

    checked = 0
    for metric in METRICS:
        per_arm = by_arm(table, metric)
        theta, adjusted = cuped(metric, per_arm)
        entries = [m for m in report["metrics"] if m["metric"] == metric]
        assert len(entries) == len(arms) - 1, metric
        for m in entries:
            what = f"{metric} {m['arm']}"
            assert m["test"] == ("delta" if metric in RATIO else "welch"), what
            assert_figures(m, compare_metric(metric, per_arm[m["arm"]], per_arm[control]), what)
            test = "delta" if metric in RATIO else "welch"
            want = compare_values(adjusted[m["arm"]], adjusted[control], test)
            assert_figures(m["cuped"], {"theta": theta, **want}, f"{what} cuped")
            raw_var = m["std_error"] ** 2
            np.testing.assert_allclose(
                m["cuped"]["variance_reduction"], 1 - want["std_error"] ** 2 / raw_var, rtol=RTOL, atol=ATOL
            )
            if metric == "gmv_per_user":
                w = m["winsorized"]
                pooled = np.concatenate([a["y"] for a in per_arm.values()])
                cap = float(np.quantile(pooled, w["quantile"]))
                capped = {k: np.minimum(a["y"], cap) for k, a in per_arm.items()}
                assert_figures(w, {"cap": cap, **compare_values(capped[m["arm"]], capped[control], "welch")}, what)
                assert w["decides"] is False
            checked += 1
    return checked


# --- pure-Python checks of the reference ----------------------------------------------------------


def test_reference_delta_method_on_a_hand_table():
    t = {"y": np.array([1.0, 0, 2, 0, 3, 1]), "x": np.array([3.0, 1, 4, 2, 5, 2])}
    c = {"y": np.array([0.0, 1, 0, 1, 1]), "x": np.array([2.0, 2, 1, 3, 2])}
    rt, vt = delta_ratio(t["y"], t["x"])
    # By hand: the variance of the linearised values over n is the delta-method variance.
    lin = linearise(t["y"], t["x"], rt, t["x"].mean())
    np.testing.assert_allclose(lin.mean(), rt, rtol=1e-14)
    np.testing.assert_allclose(lin.var(ddof=1) / len(lin), vt, rtol=1e-12)
    got = compare_metric("orders_per_visit", t, c)
    np.testing.assert_allclose(got["lift"], 0.37254901960784315, rtol=1e-12)
    np.testing.assert_allclose(got["p_value"], 0.4025176759031205, rtol=1e-12)


def test_reference_welch_and_srm_on_hand_tables():
    a = np.array([3.1, 4.7, 2.2, 5.9, 4.4, 3.8])
    b = np.array([2.0, 2.9, 3.5, 1.8, 2.6, 2.2, 3.0, 2.4])
    w = welch(a, b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    np.testing.assert_allclose(w["df"], df, rtol=1e-12)
    np.testing.assert_allclose(w["p_value"], 2 * stats.t.sf(abs(a.mean() - b.mean()) / np.sqrt(va + vb), df), rtol=1e-12)
    np.testing.assert_allclose(srm([310, 290, 420], [30, 30, 40]), 0.537452425992069, rtol=1e-12)


def test_reference_cuped_removes_the_covariates_share_of_variance():
    rng = np.random.default_rng(3)
    pre = rng.gamma(2.0, 1.0, 4000)
    post = pre + rng.normal(0, 0.5, 4000)
    arms = {
        "control": {"y": post[:2000], "pre_y": pre[:2000]},
        "treatment": {"y": post[2000:], "pre_y": pre[2000:]},
    }
    theta, adjusted = cuped("orders_per_user", arms)
    assert 0.9 < theta < 1.1
    rho2 = np.corrcoef(post, pre)[0, 1] ** 2
    reduction = 1 - adjusted["control"].var(ddof=1) / arms["control"]["y"].var(ddof=1)
    assert abs(reduction - rho2) < 0.02


# --- the report ----------------------------------------------------------------------------


def _binary() -> Path:
    if os.environ.get("LIVEPROFILE_BIN"):
        return Path(os.environ["LIVEPROFILE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    if not target.is_absolute():
        target = data.REPO_ROOT / target
    binary = target / "release" / "liveprofile"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-p", "liveprofile"], cwd=data.REPO_ROOT, check=True, timeout=3600
        )
    return binary


def _run(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=1200)


def _exposures_from_events(events: Path, out: Path) -> None:
    """One exposure per user at their first room visit inside the window, arm by a hash."""
    ev = pq.read_table(events, columns=["user_id", "ts_ms", "platform", "category", "room_id", "kind"]).to_pandas()
    ev = ev[(ev.kind == "enter") & (ev.ts_ms >= EXPERIMENT_START_MS) & (ev.ts_ms < EXPERIMENT_END_MS)]
    first = ev.sort_values(["ts_ms", "user_id"]).drop_duplicates("user_id")
    arm = ["treatment" if zlib.crc32(u.encode()) % 2 else "control" for u in first.user_id]
    table = pa.table(
        {
            "user_id": pa.array(first.user_id.tolist(), pa.utf8()),
            "experiment": pa.array(["parity"] * len(first), pa.utf8()),
            "arm": pa.array(arm, pa.utf8()),
            "ts_ms": pa.array(first.ts_ms.tolist(), pa.int64()),
            "platform": pa.array(first.platform.tolist(), pa.utf8()),
            "category": pa.array(first.category.tolist(), pa.utf8()),
            "room_id": pa.array(first.room_id.tolist(), pa.utf8()),
        }
    )
    pq.write_table(table, out)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    if os.environ.get("LIVEPROFILE_EXPERIMENT_REPORT_DIR"):
        return Path(os.environ["LIVEPROFILE_EXPERIMENT_REPORT_DIR"])
    binary = _binary()
    if _run(binary, "experiment", "report", "--help").returncode != 0:
        pytest.skip("the command line has no `experiment report` yet")
    work = tmp_path_factory.mktemp("experiment")
    definition = work / "experiment.toml"
    definition.write_text(EXPERIMENT)
    events = work / "events.parquet"
    exposures = work / "events.exposures.parquet"
    sim = ["simulate", "--users", "6000", "--days", "21", "--seed", "11", "--start-ms", str(SIM_START_MS), "--out", events]
    if "--experiment" in _run(binary, "simulate", "--help").stdout:
        sim += ["--experiment", definition, "--effect", "treatment:order_rate=1.15"]
    proc = _run(binary, *sim)
    assert proc.returncode == 0, proc.stderr
    if not exposures.exists():
        _exposures_from_events(events, exposures)
    out = work / "report"
    proc = _run(
        binary, "experiment", "report", "--experiment", definition, "--events", events, "--exposures", exposures,
        "--out", out,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_report_matches_scipy_on_its_user_table(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    table = pq.read_table(report_dir / "users.parquet")
    assert table.num_rows == report["users"] > 0
    assert check_report(report, table) == len(METRICS) * (len(report["arms"]) - 1)


def test_report_files_are_complete(report_dir):
    text = (report_dir / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    report = json.loads(text)
    assert set(report["srm"]) >= {"p_value", "flag"}
    assert all(set(a) >= {"name", "users"} for a in report["arms"])
    keys = {"metric", "arm", "mean", "control_mean", "lift", "ci_low", "ci_high", "p_value"}
    assert all(set(m) >= keys for m in report["metrics"])
    assert report["decision"]["verdict"] in {"ship", "stop", "keep_running", "invalid"}
    html = (report_dir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html

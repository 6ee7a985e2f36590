"""perflab.stats on synthetic samples whose answers are known: fast, no load, no service."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from synthetic import lognormal, samples

from perflab import stats


def test_summarize_gives_exact_percentiles_counts_and_rps() -> None:
    lat = np.random.default_rng(1).permutation(np.arange(1, 1001, dtype=float))  # 1..1000 ms
    ok = np.ones(1000, dtype=bool)
    ok[::10] = False  # every 10th fails
    s = samples(lat, rate=100, ok=ok, variant="a")
    row = stats.summarize(s, ["variant"]).iloc[0]
    assert row["requests"] == 1000 and row["failures"] == 100
    assert row["error_rate"] == pytest.approx(0.1)
    for p in stats.PERCENTILES:
        assert row[f"p{p}_ms"] == pytest.approx(np.percentile(lat, p))
    assert row["max_ms"] == 1000 and row["mean_ms"] == pytest.approx(500.5)
    # 900 successes; the window runs from the first intended start to the last answer
    window = 999 / 100 + 1.0  # last request starts at 9.99 s and takes up to 1 s
    assert row["rps"] == pytest.approx(900 / stats.window_seconds(s))
    assert stats.window_seconds(s) <= window
    for p in stats.CI_PERCENTILES:
        assert row[f"p{p}_ci_low"] <= row[f"p{p}_ms"] <= row[f"p{p}_ci_high"]
    assert 0 < row["p50_ci_high"] - row["p50_ci_low"] < 100  # ±~30 ms for n=1000 uniform
    assert math.isnan(row["rps_sd"])  # one repetition: no spread to report
    assert list(stats.summarize(s, ["variant"]).columns[: 1 + len(stats.STAT_COLUMNS)]) == [
        "variant",
        *stats.STAT_COLUMNS,
    ]


def test_summarize_of_nothing_has_the_columns_and_no_rows() -> None:
    empty = samples([], variant="a").iloc[0:0]
    out = stats.summarize(empty, ["variant"], open_model=True)
    assert out.empty
    assert {"variant", *stats.STAT_COLUMNS, *stats.UNCORRECTED_COLUMNS} <= set(out.columns)


def test_bootstrap_ci_of_a_mean_covers_it_with_the_textbook_width() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(100.0, 10.0, 2000)
    lo, hi = stats.bootstrap_ci(values, np.mean, rounds=400)
    assert lo < values.mean() < hi
    assert lo < 100.0 < hi
    textbook = 2 * 1.96 * 10.0 / math.sqrt(2000)  # ≈ 0.88
    assert 0.7 * textbook < hi - lo < 1.3 * textbook
    assert all(math.isnan(x) for x in stats.bootstrap_ci(np.array([1.0]), np.mean))
    # reproducible: the same seed gives the same interval
    assert stats.bootstrap_ci(values, np.mean, rounds=400) == (lo, hi)


def test_repeats_are_resampled_before_their_requests() -> None:
    """Two repetitions that disagree (a drifting machine): the hierarchical interval is wide,
    pooling every request as independent would have been narrow."""
    a, b = lognormal(1000, 10.0, seed=1), lognormal(1000, 13.0, seed=2)
    median = lambda v: float(np.percentile(v, 50))  # noqa: E731
    lo_h, hi_h = stats.bootstrap_ci([a, b], median)
    lo_p, hi_p = stats.bootstrap_ci(np.concatenate([a, b]), median)
    assert hi_h - lo_h > 3 * (hi_p - lo_p)
    assert lo_h <= 10.5 and hi_h >= 12.5  # spans both repetitions' medians
    # repetitions that agree: about the same interval either way
    c, d = lognormal(1000, 10.0, seed=3), lognormal(1000, 10.0, seed=4)
    lo_h, hi_h = stats.bootstrap_ci([c, d], median)
    lo_p, hi_p = stats.bootstrap_ci(np.concatenate([c, d]), median)
    assert hi_h - lo_h < 2.5 * (hi_p - lo_p)


def _two(base_ms: float, new_ms: float, n: int = 800, **kw: object) -> pd.DataFrame:
    return pd.concat(
        [
            samples(lognormal(n, base_ms, seed=11), variant="base", **kw),
            samples(lognormal(n, new_ms, seed=12), variant="new", **kw),
        ],
        ignore_index=True,
    )


@pytest.mark.parametrize(
    ("new_ms", "verdict", "ratio"),
    [(5.0, "faster", 2.0), (20.0, "slower", 0.5), (10.0, "no significant difference", 1.0)],
)
def test_compare_says_faster_slower_or_no_difference(new_ms, verdict, ratio) -> None:
    for statistic in ("p50", "p95", 99):
        c = stats.compare(_two(10.0, new_ms), "base", "new", statistic)
        assert c["verdict"] == verdict, c
        assert c["ratio"] == pytest.approx(ratio, rel=0.15)
        assert c["ci_low"] <= c["ratio"] <= c["ci_high"]
        assert c["statistic"] == (f"p{statistic}" if isinstance(statistic, int) else statistic)
        assert list(c) == stats.COMPARE_COLUMNS


def test_compare_on_throughput() -> None:
    lat = lognormal(400, 10.0, seed=5)
    base = samples(lat, rate=40, variant="base")  # 400 requests in 10 s
    more = samples(np.concatenate([lat, lat]), rate=80, variant="new")  # 800 in 10 s
    c = stats.compare(pd.concat([base, more]), "base", "new", "rps")
    assert c["verdict"] == "faster" and c["ratio"] == pytest.approx(2.0, rel=0.05)
    c = stats.compare(
        pd.concat([more.assign(variant="base"), base.assign(variant="new")]), "base", "new", "rps"
    )
    assert c["verdict"] == "slower" and c["ratio"] == pytest.approx(0.5, rel=0.05)
    same = samples(lognormal(400, 10.0, seed=6), rate=40, variant="new")
    c = stats.compare(pd.concat([base, same]), "base", "new", "rps")
    assert c["verdict"] == "no significant difference"


def test_compare_with_too_few_samples_says_so() -> None:
    c = stats.compare(_two(10.0, 5.0, n=1), "base", "new")
    assert c["verdict"] == "not enough samples" and math.isnan(c["ratio"])


def test_compare_with_repeats_is_less_sure_of_a_drift_one_repetition_shows() -> None:
    base = pd.concat(
        [samples(lognormal(500, 10.0, seed=r), variant="base", repeat=r) for r in range(3)]
    )
    new = pd.concat(
        [
            samples(lognormal(500, m, seed=10 + r), variant="new", repeat=r)
            for r, m in enumerate((10.0, 10.0, 12.5))
        ]
    )
    both = pd.concat([base, new], ignore_index=True)
    hier = stats.compare(both, "base", "new", "p50")
    pooled = stats.compare(both.drop(columns="repeat"), "base", "new", "p50")
    assert pooled["verdict"] == "slower"  # as if 1500 independent requests
    assert hier["ci_high"] - hier["ci_low"] > 2 * (pooled["ci_high"] - pooled["ci_low"])
    assert hier["ci_high"] > pooled["ci_high"]


def test_warmup_is_dropped_from_each_repetition_and_experiment() -> None:
    parts = [
        samples(np.ones(1000), rate=100, t0=t0, experiment=e, variant=v, repeat=r)
        for e, t0s in (("x", (0.0, 100.0)), ("y", (200.0, 300.0)))
        for r, t0 in enumerate(t0s)
        for v in ("a",)
    ]
    s = pd.concat(parts, ignore_index=True)
    m = stats.measured(s, warmup=2.0)
    assert len(m) == 4 * 800  # each 10 s load loses its first 2 s
    assert set(m.groupby(["experiment", "repeat"]).size()) == {800}
    # without a number, each sample's own warmup_s (as runs save it)
    m = stats.measured(s.assign(warmup_s=np.where(s["experiment"] == "x", 1.0, 5.0)))
    assert m.groupby("experiment").size().to_dict() == {"x": 2 * 900, "y": 2 * 500}
    assert stats.measured(s.iloc[0:0], 1.0).empty


def test_rps_is_per_repetition_then_averaged() -> None:
    # repetition 0: 500 requests in ~10 s; repetition 1: 1000 in ~10 s
    s = pd.concat(
        [
            samples(np.ones(500), rate=50, variant="a", repeat=0),
            samples(np.ones(1000), rate=100, t0=2e6, variant="a", repeat=1),
        ],
        ignore_index=True,
    )
    each = stats.rps_each(s)
    assert each == pytest.approx([50, 100], rel=0.01)
    row = stats.summarize(s, ["variant"]).iloc[0]
    assert row["rps"] == pytest.approx(75, rel=0.01)
    assert row["rps_sd"] == pytest.approx(np.std([50, 100], ddof=1), rel=0.02)
    # pooling both into one window (they are 1e6 s apart) would have said ~0.0015 req/s
    assert stats.window_seconds(s) > 1e6


def test_regressions_and_their_description() -> None:
    table = pd.DataFrame(
        [
            # p95 1.5x as high, interval 1.4x-1.6x: slower by more than 10% and 40%, not 60%
            {"statistic": "p95", "ratio": 1 / 1.5, "ci_low": 1 / 1.6, "ci_high": 1 / 1.4},
            # rps 0.8x, interval 0.75-0.85: lower by more than 10%, not by more than 20%
            {"statistic": "rps", "ratio": 0.8, "ci_low": 0.75, "ci_high": 0.85},
            # p50 within noise
            {"statistic": "p50", "ratio": 1.0, "ci_low": 0.9, "ci_high": 1.1},
        ]
    )
    assert list(stats.regressions(table, 0.10)["statistic"]) == ["p95", "rps"]
    assert list(stats.regressions(table, 0.20)["statistic"]) == ["p95"]
    assert list(stats.regressions(table, 0.60)["statistic"]) == []
    assert stats.describe_change(table.iloc[0]) == "p95 +50.0% (95% CI +40.0% to +60.0%)"
    assert stats.describe_change(table.iloc[1]) == "rps -20.0% (95% CI -25.0% to -15.0%)"


def test_statistics_are_parsed_or_refused() -> None:
    assert stats.parse_statistics("p50, P95,rps,p99.9") == ["p50", "p95", "rps", "p99.9"]
    for bad in ("p50,mean", "", "p100", "p0", "p00", "p-5"):
        with pytest.raises(ValueError, match="not a statistic"):
            stats.parse_statistics(bad)


def test_compare_runs_groups_by_experiment_variant_endpoint() -> None:
    def run(ms: float, seed: int) -> pd.DataFrame:
        return pd.concat(
            [
                samples(
                    lognormal(600, ms, seed),
                    endpoint=ep,
                    experiment="e",
                    variant="v",
                    repeat=0,
                    warmup_s=1.0,
                )
                for ep in ("GET /a", "GET /b")
            ],
            ignore_index=True,
        )

    table = stats.compare_runs(run(10.0, 1), run(20.0, 2), ["p50", "rps"])
    assert len(table) == 4 and set(table["endpoint"]) == {"GET /a", "GET /b"}
    lat = table[table["statistic"] == "p50"]
    assert (lat["verdict"] == "slower").all()
    assert lat["new"].to_numpy() == pytest.approx(2 * lat["base"].to_numpy(), rel=0.15)
    # the same rate of arrivals in both: throughput did not change
    assert (table[table["statistic"] == "rps"]["verdict"] == "no significant difference").all()

"""The scale curve: which bottleneck a point's CPU readings name, where the knee is, and one
small real curve (a real catalog, real Locust, CPU read from /proc)."""

from __future__ import annotations

import pandas as pd
import pytest

from perflab import cli, paths
from perflab.scale import Point, bottleneck, knee


def point(rps: float = 100, service: float = 0.3, gen: float = 0.3, gen_max: float = 0.3,
          machine: float = 0.7, workers: int = 1) -> Point:  # fmt: skip
    return Point(workers, 1, 8, 1000, rps, 1, 2, 0, service, gen, gen_max, machine)


def test_the_bottleneck_is_read_from_cpu() -> None:
    assert bottleneck(point(gen=0.95, gen_max=0.95), cores=4) == "load generator CPU"
    assert bottleneck(point(service=0.97), cores=4) == "service CPU"
    assert bottleneck(point(service=1.2, workers=2), cores=4).startswith("waits")
    assert bottleneck(point(service=0.8, gen=0.8, machine=1.7), cores=2).startswith("machine")
    assert bottleneck(point(service=0.1, gen=0.1, machine=1.9), cores=2).startswith("other load")
    assert bottleneck(point(service=0.2, gen=0.2, machine=0.5), cores=2).startswith("waits")


def test_the_knee_is_where_more_workers_stop_paying() -> None:
    curve = [point(rps=r, workers=w) for w, r in [(1, 100), (2, 190), (4, 200), (8, 205)]]
    assert knee(curve) == 1
    assert knee(curve[:2]) is None


@pytest.mark.slow
def test_a_small_scale_curve(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["scale", "--service-workers", "1,2", "--locust-workers", "1", "--users", "4",
         "--duration", "5", "--warmup", "1", "--size", "tiny"]
    )  # fmt: skip
    assert code == 0
    run = sorted(paths.RESULTS.glob("*-scale"))[-1]
    table = pd.read_csv(run / "scale.csv")
    print(table.to_string())
    assert list(table["service_workers"]) == [1, 2] and (table["requests"] > 0).all()
    # CPU was read for both roles, from the processes themselves
    assert (table["service_cpu"] > 0).all() and (table["generator_cpu"] > 0).all()
    assert table["bottleneck"].str.len().gt(0).all()
    assert (run / "scale.png").stat().st_size > 0

"""`python -m bench [--quick] [--out DIR] [--only 1,3] [--size NAME]`.

Runs the items in order; an item that fails becomes an "error" line (with the first line of its
exception) and the others still run, so one broken measurement never hides the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path

from bench import items, report
from perflab.procs import stop_all

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_SECONDS = 600


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny version (about a minute)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"default {RESULTS}")
    p.add_argument("--only", help="comma-separated item numbers, e.g. 1,2")
    p.add_argument(
        "--size",
        help="dataset for the catalog items (default: 'default' in full, 'tiny' with --quick)",
    )
    p.add_argument("--keep", action="store_true", help="keep raw Locust output and logs")
    args = p.parse_args(argv)
    budget = items.Budget.quick() if args.quick else items.Budget.full()
    size = args.size or ("tiny" if args.quick else "default")
    try:
        wanted = {int(x) for x in args.only.split(",")} if args.only else None
    except ValueError:
        p.error(f"--only takes item numbers like 1,3 (got {args.only!r})")
    work = Path(tempfile.mkdtemp(prefix="perflab-bench-"))
    meta = report.machine()
    started = datetime.now()
    t0 = time.perf_counter()
    rows: list[report.Row] = []
    bench = items.Bench(budget, size, work)
    try:
        for number, topic, fn in items.ITEMS:
            if wanted and number not in wanted:
                continue
            t_item = time.perf_counter()
            print(f"[bench] {number}. {topic} ...", flush=True)
            try:
                got = fn(bench)
            except Exception as exc:  # one line per failed item, keep going
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                traceback.print_exc()
                got = [
                    report.Row(
                        number,
                        topic,
                        "could not be measured",
                        None,
                        "",
                        "—",
                        "error",
                        f"{type(exc).__name__}: {first}",
                    )
                ]
            if bench.failures:  # failed requests make an item's numbers suspect: say so
                note = "failed requests: " + ", ".join(
                    f"{label} {n}/{total}" for label, n, total in bench.failures
                )
                broken = any(n > 0.01 * total for _, n, total in bench.failures)
                for r in got:
                    r.detail = f"{r.detail}; {note}" if r.detail else note
                    if broken and r.verdict in ("pass", "falls short", "info"):
                        r.verdict = "error"
                bench.failures.clear()
            for r in got:
                print(
                    f"    {r.measure}: {r.shown_value()} (bar {r.bar}) -> {r.verdict}"
                    f"  [{r.detail}]",
                    flush=True,
                )
            print(f"    ({time.perf_counter() - t_item:.0f} s)", flush=True)
            rows.extend(got)
    except KeyboardInterrupt:
        print("[bench] interrupted: writing what was measured", flush=True)
    finally:
        bench.close()
        stop_all()
    wall = time.perf_counter() - t0
    if not wanted:
        limit = 60 * 2 if args.quick else BUDGET_SECONDS
        rows.append(
            report.Row(
                0,
                "Budget",
                "wall time of this bench run",
                wall,
                "s",
                f"≤ {limit} s",
                report.verdict_at_most(wall, limit),
                "--quick" if args.quick else "full run",
            )
        )
    meta.update(mode="--quick" if args.quick else "full", size=size, wall=f"{wall:.0f} s")
    csv_path, md_path = report.write(rows, args.out, meta, started)
    if not args.keep:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    else:
        print(f"[bench] raw output kept in {work}")
    print(f"\n[bench] wrote {md_path} and {csv_path}\n")
    print(md_path.read_text())
    return 0

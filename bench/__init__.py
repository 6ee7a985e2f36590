"""perflab's own benchmarks: how faithful, how costly and how close to the limit the lab is.

`make bench` (or `python -m bench`) runs them and writes `bench/results/<date>.md` and `.csv`;
`python -m bench --quick --out DIR` is a tiny version (the test suite runs it).
"""

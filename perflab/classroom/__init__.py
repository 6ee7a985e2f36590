"""What the classroom uses: the exercises' checks, the walkthroughs' helpers, the notebook runner.

These serve a different reader than the harness (a student in a notebook, an instructor running
every exercise), so they live apart from it: `checks` (an exercise's check cell), `lessons`
(small calls the walkthrough notebooks make, and narration read from a run), `show` (the real
source of what a lesson measures, read from disk, never a copy), `notebooks` (run a notebook
with a fresh kernel, as `make test` and `make check-exercises` do).
They build on the harness, never the reverse.
"""

"""Release the exercises to students and grade what they hand back.

Concepts as nbgrader has them, in our own small code and without depending on it:

- the *source* is `notebooks/exercises/` (student copies) and `notebooks/solutions/` (kept
  apart, never released). `release(DIR)` writes the student copies, outputs cleared, and strips
  any `### BEGIN SOLUTION` / `### END SOLUTION` block an instructor left in an answer cell;
- a submission folder holds one folder per student (`DIR/<student>/<exercise>.ipynb`);
  `grade(DIR)` runs each submitted notebook top to bottom with a fresh kernel, like a student's
  "Restart and run all", and reads the verdict the check cell printed (`perflab-check: {json}`,
  checks.py). A notebook that fails before its check, a kernel that dies, a cell that runs too
  long or an exercise never handed in is a zero with its reason, never a crash of the grader;
- the result is `grades.csv` (student, exercise, passed, measured values, feedback, seconds)
  and a printed table.

Cells carry nbgrader's metadata (`nbgrader.solution` on the answer cell, `nbgrader.grade` and
`points` on the check cell), so the same notebooks can go through nbgrader where a course uses it.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from perflab import paths
from perflab.classroom import checks, notebooks
from perflab.errors import LabError

SOLUTION_BLOCK = re.compile(
    r"^([ \t]*)### BEGIN SOLUTION.*?^[ \t]*### END SOLUTION[^\n]*\n?", re.M | re.S
)
GRADES_CSV = "grades.csv"
FIELDS = ["student", "exercise", "passed", "measured", "feedback", "seconds"]


def exercises(source: Path | None = None) -> list[Path]:
    """The exercise notebooks of a release, in order (the name's chapter prefix first)."""
    folder = source or paths.NOTEBOOKS / "exercises"
    found = sorted(p for p in folder.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not found:
        raise LabError(f"no exercise notebooks in {folder}")
    return found


def strip_solutions(source: str) -> str:
    """nbgrader's convention: a solution block becomes a place for the student's code."""
    return SOLUTION_BLOCK.sub(
        lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()\n",
        source,
    )


def release(dest: Path, source: Path | None = None) -> list[Path]:
    """Write the student copies of every exercise into `dest` (outputs cleared, solutions out).

    `dest` must be empty or absent: a release never overwrites a student's work.
    """
    import nbformat

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise LabError(f"{dest} is not empty: release into a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in exercises(source):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
                cell.source = strip_solutions(cell.source)
        out = dest / path.name
        nbformat.write(nb, out)
        written.append(out)
    (dest / "README.md").write_text(
        "# perflab exercises\n\nOpen each notebook, write your code in the cells marked "
        "`YOUR CODE`, and run the check cell at the end: it runs your code for real and says "
        "what it measured.\nHand the folder back as it is; the grader runs every notebook "
        "again from the top with a fresh kernel.\n",
        encoding="utf-8",
    )
    return written


@dataclass
class Grade:
    student: str
    exercise: str
    passed: bool
    feedback: str
    measured: dict = field(default_factory=dict)
    seconds: float = 0.0

    def row(self) -> dict[str, object]:
        return {
            "student": self.student,
            "exercise": self.exercise,
            "passed": int(self.passed),
            "measured": json.dumps(self.measured, default=str, sort_keys=True),
            "feedback": self.feedback,
            "seconds": round(self.seconds, 1),
        }


def verdicts(nb: object) -> list[dict]:
    """Every `perflab-check:` record the executed notebook's cells printed, in order."""
    found = []
    for cell in getattr(nb, "cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            text = out.get("text", "")
            for line in (text if isinstance(text, str) else "".join(text)).splitlines():
                if line.startswith(checks.MARKER):
                    try:
                        found.append(json.loads(line[len(checks.MARKER) :]))
                    except ValueError:
                        continue
    return found


def _error_line(message: str) -> str:
    """The last informative line of a cell's error (the exception and its message)."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", message).splitlines()]
    lines = [ln for ln in lines if ln and not set(ln) <= set("-^~ ")]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Failed|Interrupt)\b", ln):
            return ln[:300]
    return (lines[-1] if lines else message)[:300]


def grade_notebook(path: Path, student: str, out: Path, timeout: float = 300) -> Grade:
    """Run one submitted notebook with a fresh kernel; its grade, whatever happens in it."""
    started = time.monotonic()
    exercise = path.stem
    try:
        done = notebooks.execute(path, timeout=timeout, output=out)
        executed, error = done.notebook, None
    except notebooks.NotebookError as exc:
        error = str(exc)
        executed = None
        if out.exists():
            import nbformat

            executed = nbformat.read(out, as_version=4)
    records = verdicts(executed) if executed is not None else []
    seconds = time.monotonic() - started
    last = records[-1] if records else None
    if last is not None:
        passed = bool(last.get("passed")) and error is None
        feedback = str(last.get("feedback", ""))
        if error is not None and last.get("passed"):
            feedback = f"the check passed but a later cell failed: {_error_line(error)}"
        return Grade(student, exercise, passed, feedback, dict(last.get("measured", {})), seconds)
    if error is not None:
        return Grade(
            student, exercise, False, f"the notebook failed: {_error_line(error)}", {}, seconds
        )
    return Grade(
        student, exercise, False, "the check cell never ran (was it deleted?)", {}, seconds
    )


def grade(
    submissions: Path,
    *,
    source: Path | None = None,
    out_csv: Path | None = None,
    timeout: float = 300,
) -> list[Grade]:
    """Grade every student folder in `submissions` on every exercise of the release.

    A folder of notebooks with no student folders is one student's (named after the folder).
    Executed notebooks go to `<submissions>/graded/<student>/`; the CSV to
    `<submissions>/grades.csv` unless `out_csv` says otherwise.
    """
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise LabError(f"no submissions folder at {submissions}")
    wanted = [p.stem for p in exercises(source)]
    students = sorted(
        d
        for d in submissions.iterdir()
        if d.is_dir() and d.name not in ("graded",) and not d.name.startswith(".")
    )
    if not students and any(submissions.glob("*.ipynb")):
        students = [submissions]
    if not students:
        raise LabError(f"no student folders (with notebooks) in {submissions}")
    graded_dir = submissions / "graded"
    shutil.rmtree(graded_dir, ignore_errors=True)
    grades = []
    for folder in students:
        student = folder.name
        for exercise in wanted:
            path = folder / f"{exercise}.ipynb"
            if not path.is_file():
                grades.append(Grade(student, exercise, False, "not handed in"))
                continue
            g = grade_notebook(path, student, graded_dir / student / path.name, timeout)
            verdict = "PASS" if g.passed else "fail"
            print(f"{student:>16}  {exercise:<28} {verdict}  {g.feedback[:70]}", flush=True)
            grades.append(g)
    out_csv = out_csv or submissions / GRADES_CSV
    write_csv(grades, out_csv)
    return grades


def write_csv(grades: list[Grade], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for g in grades:
            writer.writerow(g.row())


def summary(grades: list[Grade]) -> str:
    """A table: one row per student, one column per exercise (PASS / -), and the total."""
    students = sorted({g.student for g in grades})
    names = list(dict.fromkeys(g.exercise for g in grades))
    by = {(g.student, g.exercise): g.passed for g in grades}
    width = max([len(s) for s in students] + [7])
    head = f"{'student':<{width}}  " + " ".join(f"{i:>2}" for i in range(1, len(names) + 1))
    lines = [head + "  passed"]
    for s in students:
        marks = " ".join(("ok" if by.get((s, n)) else "--") for n in names)
        total = sum(bool(by.get((s, n))) for n in names)
        lines.append(f"{s:<{width}}  {marks}  {total}/{len(names)}")
    lines.append("")
    lines += [f"{i:>2} = {n}" for i, n in enumerate(names, 1)]
    return "\n".join(lines)

"""`perflab classroom release` and `grade`: student copies without solutions; grades that hold.

The slow test is the classroom's round trip on every exercise: the untouched release fails
every check (at its check cell, not before), the solutions pass every one, and a student who
breaks a notebook gets a zero with the error, not a crashed grader.
"""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from perflab import paths
from perflab.classroom import grading
from perflab.cli import main
from perflab.errors import LabError

EXERCISES = sorted((paths.NOTEBOOKS / "exercises").glob("*.ipynb"))


def test_release_writes_student_copies_without_solutions(tmp_path):
    written = grading.release(tmp_path / "class")
    assert [p.name for p in written] == [p.name for p in EXERCISES]
    assert len(written) >= 12
    for copy in written:
        text = copy.read_text()
        solution = (paths.NOTEBOOKS / "solutions" / copy.name).read_text()
        answer = _answer(json.loads(solution))
        assert answer not in text, f"{copy.name} holds its solution"
        assert _answer(json.loads(text)) == _answer(
            json.loads((paths.NOTEBOOKS / "exercises" / copy.name).read_text())
        )
    with pytest.raises(LabError, match="not empty"):
        grading.release(tmp_path / "class")


def _answer(nb: dict) -> str:
    (cell,) = [c for c in nb["cells"] if "answer" in c["metadata"].get("tags", [])]
    assert cell["metadata"]["nbgrader"]["solution"] is True
    return "".join(cell["source"])


def test_solution_blocks_are_stripped():
    source = "x = 1\n    ### BEGIN SOLUTION\n    secret = 42\n    ### END SOLUTION\ny = 2\n"
    out = grading.strip_solutions(source)
    assert "secret" not in out and "    raise NotImplementedError()" in out and "y = 2" in out


def test_the_summary_table_counts_passes():
    grades = [
        grading.Grade("ana", "04_a", True, "ok"),
        grading.Grade("ana", "05_b", False, "no"),
        grading.Grade("bo", "04_a", False, "no"),
        grading.Grade("bo", "05_b", False, "no"),
    ]
    table = grading.summary(grades)
    assert "ana" in table and "1/2" in table and "0/2" in table and "2 = 05_b" in table


def test_grade_refuses_a_folder_without_students(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["classroom", "grade", str(tmp_path / "empty")]) == 2
    assert "no student folders" in capsys.readouterr().err


@pytest.mark.slow  # runs every exercise twice with fresh kernels: services, Locust, servers
@pytest.mark.notebook
@pytest.mark.timeout(3600)  # 25 notebooks; minutes on a quiet laptop, many more on a busy CI
def test_release_then_grade_untouched_fails_solutions_pass(tmp_path, capsys, artifacts):
    release = tmp_path / "release"
    assert main(["classroom", "release", str(release)]) == 0
    subs = tmp_path / "submissions"
    shutil.copytree(release, subs / "untouched")
    (subs / "solved").mkdir()
    for path in (paths.NOTEBOOKS / "solutions").glob("*.ipynb"):
        shutil.copy(path, subs / "solved" / path.name)
    broken = subs / "broken"
    broken.mkdir()
    nb = json.loads((release / EXERCISES[0].name).read_text())
    setup = next(
        c
        for c in nb["cells"]
        if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", [])
    )
    setup["source"] = ["raise RuntimeError('the student broke this cell')\n"]
    (broken / EXERCISES[0].name).write_text(json.dumps(nb))

    assert main(["classroom", "grade", str(subs), "--timeout", "240"]) == 0
    out = capsys.readouterr().out
    shutil.copy(subs / "grades.csv", artifacts / "classroom-grades.csv")  # timings, feedback
    with (subs / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    by = {(r["student"], r["exercise"]): r for r in rows}
    names = [p.stem for p in EXERCISES]
    failed_solutions = {
        n: by[("solved", n)]["feedback"] for n in names if by[("solved", n)]["passed"] != "1"
    }
    assert not failed_solutions, failed_solutions
    for n in names:
        row = by[("untouched", n)]
        assert row["passed"] == "0", f"the untouched {n} passed"
        assert not row["feedback"].startswith("the notebook failed"), (
            f"{n} failed before its check: {row['feedback']}"
        )
        assert json.loads(by[("solved", n)]["measured"]), f"{n}: nothing measured"
    assert by[("broken", names[0])]["passed"] == "0"
    assert "the student broke this cell" in by[("broken", names[0])]["feedback"]
    assert by[("broken", names[1])]["feedback"] == "not handed in"
    assert "solved    " in out or "solved" in out
    assert f"{len(names)}/{len(names)}" in out

"""The code a lesson shows is the code on disk now; narration reads its numbers from the run."""

from __future__ import annotations

import math
import textwrap

import pytest
from synthetic import write_run

from perflab import paths
from perflab.classroom import lessons
from perflab.classroom.show import Code, show, show_file, side_by_side, source_path
from perflab.errors import LabError
from perflab_services.catalog.core.cache import MemoryCache
from perflab_services.catalog.repository import NaiveRepository, OptimizedRepository


def test_show_a_method_from_its_file():
    code = show(NaiveRepository.list_products)
    assert code.text.lstrip().startswith("def list_products(")
    assert "class NaiveRepository" not in code.text  # the method, not its class
    assert code.path.name == "repository.py"
    lines = (paths.ROOT / "services/catalog/repository.py").read_text().splitlines()
    assert code.text.splitlines()[0] == lines[code.first_line - 1]
    assert len(code.text.splitlines()) == code.last_line - code.first_line + 1
    # The optimized one is a different function of another class, same name.
    other = show(OptimizedRepository.list_products)
    assert other.first_line > code.last_line and other.text != code.text


def test_show_a_class_and_a_decorated_route():
    assert "async def get_or_load" in show(MemoryCache)
    from perflab_services.catalog.api.routes import products

    route = show(products.list_products)
    assert route.text.startswith('@router.get("", response_model=schemas.ProductPage)')


def test_show_file_never_imports_it(tmp_path):
    # A locustfile imports Locust, which must not be imported in a kernel: parse, do not import.
    f = tmp_path / "lf.py"
    f.write_text(
        textwrap.dedent(
            """\
            import module_that_does_not_exist

            class User:
                wait = 1

                @decorated
                def one_request(self):
                    return 1
            """
        )
    )
    method = show_file(f, "User.one_request")
    assert method.text.splitlines()[0].strip() == "@decorated"
    assert (method.first_line, method.last_line) == (6, 8)
    assert show_file(f, lines=(3, 4)).text == "class User:\n    wait = 1"
    assert show_file(f).last_line == 8
    with pytest.raises(LabError, match=r"defines no 'User\.missing'"):
        show_file(f, "User.missing")
    with pytest.raises(LabError, match="has 8 lines"):
        show_file(f, lines=(5, 20))
    with pytest.raises(LabError, match="no source file"):
        show_file(tmp_path / "nope.py")


def test_show_reads_the_file_as_edited_now(tmp_path, monkeypatch):
    """A student edits the service's file: show() prints the edit, not the imported version."""
    import importlib
    import sys

    f = tmp_path / "edited_mod.py"
    f.write_text("def answer():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("edited_mod")
    try:
        f.write_text("# a comment the student added\n\ndef answer():\n    return 2  # faster\n")
        code = show(mod.answer)
        assert "return 2" in code and code.first_line == 3
    finally:
        sys.modules.pop("edited_mod", None)


def test_renders_as_html_in_jupyter_and_text_elsewhere():
    code = show(MemoryCache.get_or_load)
    assert str(code).startswith("# MemoryCache.get_or_load (services/catalog/core/cache.py:")
    html = code._repr_html_()
    assert "get_or_load" in html and "<span" in html  # highlighted
    both = side_by_side(
        show(NaiveRepository.list_products), show(OptimizedRepository.list_products)
    )
    assert str(both).count("list_products") >= 2 and "display:flex" in both._repr_html_()
    with pytest.raises(LabError, match="no Python source"):
        show(len)


def test_code_is_a_plain_value():
    c = Code("x = 1", paths.ROOT / "a.py", 1, 1)
    assert repr(c) == "# a.py:1-1\nx = 1"


def test_narration_reads_the_run():
    run = write_run("narrate", none=4.0, memory=1.0)
    sentence = lessons.effect(run, "caching", "memory", "p50")
    row = run.comparison.query("variant == 'memory' and statistic == 'p50'").iloc[0]
    assert sentence.startswith(f"memory vs none on p50: {row['ratio']:.2f}x faster (95% CI ")
    assert "the difference is real" in sentence and 3 < row["ratio"] < 5
    p50 = lessons.measured_value(run, "caching", "memory", "p50_ms")
    assert math.isclose(p50, float(run.summary.set_index("variant").loc["memory", "p50_ms"]))
    with pytest.raises(LabError, match="no caching/redis"):
        lessons.measured_value(run, "caching", "redis", "p50_ms")
    with pytest.raises(LabError, match="compared no caching/redis"):
        lessons.effect(run, "caching", "redis")
    assert run.manifest["run_id"] in lessons.provenance(run)
    table = lessons.ci_table(run, "caching")
    assert table["variant"].tolist() == ["none", "memory"] and "p99_95%_CI" in table
    table = lessons.effects(run)
    assert table["statistic"].tolist() == ["p50", "p95"]
    assert table["change"].str.endswith("x faster").all() and " to " in table["ci"].iloc[0]


def test_narration_says_slower_and_no_difference():
    run = write_run("narrate-slow", none=1.0, memory=3.0, redis=1.0)
    slower = lessons.effect(run, "caching", "memory", "p50")
    row = run.comparison.query("variant == 'memory' and statistic == 'p50'").iloc[0]
    assert slower.startswith(f"memory vs none on p50: {1 / row['ratio']:.2f}x slower (95% CI ")
    assert f"{1 / row['ci_high']:.2f}x to {1 / row['ci_low']:.2f}x slower" in slower
    # Statistics the saved comparison lacks are computed from the samples, with their CIs.
    table = lessons.effects(run, "caching", ["rps", "p99"])
    assert sorted(set(table["statistic"])) == ["p99", "rps"] and len(table) == 4
    assert "x slower" in lessons.effect(run, "caching", "memory", "p99")
    # Two samples of one distribution (fixed seeds): the interval straddles 1.
    assert "the interval includes 1" in lessons.effect(run, "caching", "redis", "p50")


def test_course_effects_from_the_saved_runs(tmp_path):
    write_run("nbx-one", none=4.0, memory=1.0)
    write_run("nbx-one", none=4.0, memory=2.0)  # the newer run of the same notebook wins
    table = lessons.course_effects({"nbx-one": "98_one", "nbx-two": "99_two"})
    one = table[table["notebook"] == "98_one"]
    assert set(one["statistic"]) == {"p50", "rps"} and one["variant"].eq("memory").all()
    newest = lessons.latest_run("nbx-one")
    assert newest is not None and one["run"].eq(newest.path.name).all()
    p50 = one[one["statistic"] == "p50"].iloc[0]
    assert p50["change"].endswith("x faster") and float(p50["change"].split("x")[0]) < 3
    two = table[table["notebook"] == "99_two"]
    assert two["run"].iloc[0] == "not run yet (no saved 'nbx-two' run)"


def test_source_path_finds_a_module_without_importing_it():
    import sys

    name = "perflab_services.frameworks.django_app"
    was_imported = name in sys.modules
    path = source_path(name)
    assert path.name == "django_app.py" and "def product" in show_file(path, "product")
    assert (name in sys.modules) == was_imported
    with pytest.raises(LabError, match="no Python source file"):
        source_path("perflab_services.no_such_module")

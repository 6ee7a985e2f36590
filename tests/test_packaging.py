"""One source of truth for dependencies: environment.yml must mirror pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["dev"]]


def test_environment_yml_pip_section_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1
    pip = [line for line in pip_sections[0] if not line.startswith("-e")]
    assert sorted(pip) == sorted(_pyproject_requirements())
    assert "-e ." in pip_sections[0], "conda users get the project itself installed too"


def test_environment_yml_brings_python_and_redis_server():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python>=3.11") for d in conda)
    assert "redis-server" in conda


def test_every_package_folder_is_listed_under_its_import_name():
    """`services/` is imported as `perflab_services`, `loadtests/` and `notebooks/` ship as
    `perflab.loadtests` and `perflab.notebooks` (tool.setuptools.package-dir): setuptools cannot
    discover mapped packages, so each one is listed, and a forgotten one would be missing from
    the wheel."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    mapping = {folder: name for name, folder in tool.get("package-dir", {}).items()}
    assert mapping == {
        "services": "perflab_services",
        "loadtests": "perflab.loadtests",
        "notebooks": "perflab.notebooks",
    }
    found = set()
    for folder in ("perflab", "services", "loadtests", "notebooks"):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join((mapping.get(rel[0], rel[0]), *rel[1:])))
    assert found == listed


def test_the_license_file_is_the_license_pyproject_names():
    license = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    text = (ROOT / "LICENSE").read_text()
    assert license in ({"text": "MIT"}, "MIT")  # the table form, or an SPDX expression
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 perflab contributors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_notebooks_are_linted_and_stripped_for_contributors():
    """ruff checks and formats the notebooks' code with the rest; `make git-filters` registers the
    nbstripout filter that .gitattributes names (issue 14: a contributor's outputs never land)."""
    import subprocess
    import sys

    ruff = Path(sys.executable).with_name("ruff")
    listed = subprocess.run(
        [ruff, "check", "--show-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "00_quickstart.ipynb" in listed
    attributes = (ROOT / ".gitattributes").read_text().splitlines()
    assert "*.ipynb filter=nbstripout" in attributes
    makefile = (ROOT / "Makefile").read_text()
    assert "git-filters: install\n\t$(BIN)/nbstripout --install --attributes .gitattributes" in (
        makefile
    )

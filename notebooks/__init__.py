"""The walkthrough and exercise notebooks, shipped inside the perflab wheel as `perflab.notebooks`.

Not code: this file only makes the folder a package, so that pyproject's package-dir can map it
into the wheel and an installed perflab finds the notebooks with `importlib.resources`
(`perflab.paths.NOTEBOOKS`); `perflab notebooks DIR` copies them out for a user who did not clone
the repository. Solutions stay in the repository (instructors release them: `perflab classroom`).
"""

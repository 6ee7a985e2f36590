"""The lab's locustfiles, shipped inside the perflab wheel as the package `perflab.loadtests`.

This folder stays at the top of the repository (where a reader looks for load tests); pyproject's
package-dir maps it into the package, so an installed perflab finds its locustfiles with
`importlib.resources` (`perflab.paths.LOADTESTS`) wherever it is installed. Locust loads each file
by path, as a module of its own name: nothing imports this package's modules.
"""

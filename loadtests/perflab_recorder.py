"""Record every request of any locustfile: pass this file beside yours.

    locust -f mine.py,loadtests/perflab_recorder.py --perflab-samples samples.csv

Locust imports each file given to `-f` as a module of its own name, so the recorder itself
lives in the package (`perflab.locust_plugin`) and this file only imports it: whichever of your
files also imports it, its listeners are registered once. `perflab load --locustfile mine.py`
adds this file for you.
"""

import perflab.locust_plugin  # noqa: F401  (registers the recorder's listeners)

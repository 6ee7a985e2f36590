"""Plain Locust, the way its docs write it: the reference for the lab's harness overhead.

Same user class (FastHttpUser), no wait, one GET; no sample recorder, no schedule, no request-id
header. `BENCH_PATH` picks the path (default `/`).
"""

import os

from locust import FastHttpUser, constant, task

PATH = os.environ.get("BENCH_PATH", "/")


class BareUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self) -> None:
        self.client.get(PATH)

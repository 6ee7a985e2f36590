"""What a load sends: its traffic mix, its load model, popular keys. Plain data both sides share.

The harness (`perflab.loadgen`, in a notebook or the CLI) describes a load with these classes,
and the lab's locustfile (`loadtests/lab.py`, inside Locust's gevent processes) reads the same
definitions back from Locust's command line: `LabOptions` is the one list of that locustfile's
options, which it registers as Locust custom options and the harness turns into arguments.
So this module imports the standard library only: every Locust worker imports it, and pandas or
numpy there would cost each worker seconds and memory for nothing.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from perflab.errors import LabError


@dataclass
class LoadProfile:
    """How much load, and of which kind.

    `duration` is rounded up to whole seconds (Locust's --run-time takes no fractions).
    closed: `users` clients, each sending its next request `think_time` after the last answer
    (Locust's own model; slows down when the service does). open: requests *arrive* at `rate`
    per second whatever the service does; `users` only caps concurrency.
    """

    model: Literal["closed", "open"] = "closed"
    users: int = 10
    rate: float | None = None
    arrival: Literal["constant", "poisson"] = "constant"
    duration: float = 10.0
    warmup: float = 2.0
    spawn_rate: float | None = None
    think_time: tuple[float, float] | None = None
    workers: int = 1
    # Workers started elsewhere (`perflab worker --master HOST:PORT`) that the master waits
    # for, listening on `master_bind` ("HOST:PORT"; default: loopback, a free port).
    external_workers: int = 0
    master_bind: str = ""
    timeout: float = 30.0
    seed: int = 1

    def validate(self) -> None:
        if self.model not in ("closed", "open"):
            raise LabError(f"unknown load model {self.model!r}: use 'closed' or 'open'")
        if self.model == "open" and not (self.rate and self.rate > 0):
            raise LabError("the open model needs a positive --rate (requests per second)")
        if self.users < 1:
            raise LabError("users must be at least 1")
        if self.duration <= 0:
            raise LabError("duration must be positive")
        if self.warmup < 0 or self.warmup >= self.duration:
            raise LabError("warmup must be at least 0 and shorter than the duration")
        if self.workers < 1:
            raise LabError("workers must be at least 1")
        if self.external_workers < 0:
            raise LabError("external workers must be 0 or more")


@dataclass
class Endpoint:
    """One kind of request in the mix. `path` may hold {product}, {category}, {offset}, {rand}."""

    name: str
    path: str
    method: str = "GET"
    weight: float = 1.0
    json: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: object) -> Endpoint:
        if not isinstance(d, dict) or not isinstance(d.get("path"), str):
            raise LabError(f'each endpoint of a mix needs a "path": got {d!r}')
        known = {f.name for f in fields(cls)}
        if unknown := set(d) - known:
            raise LabError(f"unknown endpoint field(s) {sorted(unknown)}: use {sorted(known)}")
        method = str(d.get("method", "GET")).upper()
        ep = cls(**{"name": f"{method} {d['path']}", **d, "method": method})
        if not ep.path.startswith("/"):
            raise LabError(f"an endpoint's path starts with '/': got {ep.path!r}")
        if not (isinstance(ep.weight, int | float) and ep.weight > 0):
            raise LabError(f"an endpoint's weight is a positive number: got {ep.weight!r}")
        return ep


def mix_json(mix: list[Endpoint]) -> str:
    """A mix as the JSON that `parse_mix` reads back."""
    return json.dumps([{k: v for k, v in asdict(e).items() if v not in (None, {})} for e in mix])


def parse_mix(spec: str, named: Mapping[str, list[Endpoint]] | None = None) -> list[Endpoint]:
    """A traffic mix from one string, as typed after `--mix` or in Locust's web UI:

    - a name in `named` (`caching`): that mix (`perflab.experiments.mix` passes every
      experiment's, so this module need not know the experiments);
    - a path (`/healthz`, `/products/{product}`): GET it, nothing else;
    - JSON: a list of endpoints (`[{"path": "/products/{product}", "weight": 9}, ...]`, fields
      as `Endpoint`), or one endpoint;
    - `@file.json`: the same JSON, from a file.
    """
    spec = spec.strip()
    if not spec:
        raise LabError("the traffic mix is empty: give an experiment's name, a path or JSON")
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            spec = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise LabError(f"cannot read the mix file {path}: {exc.strerror}") from None
        return _mix_from_json(spec, str(path))
    if spec[0] in "[{":
        return _mix_from_json(spec, "--mix")
    if spec.startswith("/"):
        return [Endpoint(f"GET {spec}", spec)]
    named = named or {}
    if spec not in named:
        raise LabError(
            f"unknown mix {spec!r}: give an experiment's name "
            f"({', '.join(named)}), a path like /healthz, JSON or @file.json"
        )
    return list(named[spec])


def _mix_from_json(text: str, where: str) -> list[Endpoint]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabError(f"{where} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise LabError(f"{where} holds no endpoint")
    try:
        return [Endpoint.from_dict(d) for d in items]
    except TypeError as exc:
        raise LabError(f"{where}: {exc}") from None


class Zipf:
    """Keys 1..n with Zipf popularity (key k drawn with weight 1/k**s): id 1 is the hottest.

    Real catalogs are read this way (a few products get most views), and a cache's hit ratio
    depends on it; the load and the exercises' checks draw keys from the same law.
    """

    def __init__(self, n: int, s: float = 1.0) -> None:
        if n < 1:
            raise LabError("a Zipf popularity needs at least one key")
        self.n = n
        self._cumulative = list(itertools.accumulate(1.0 / k**s for k in range(1, n + 1)))

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cumulative, rng.random() * self._cumulative[-1]) + 1

    def sample(self, count: int, seed: int) -> list[int]:
        rng = random.Random(seed)
        return [self.draw(rng) for _ in range(count)]


class Traffic:
    """Picks the next request of a mix and fills its path's placeholders, reproducibly."""

    def __init__(
        self, mix: list[Endpoint], products: int, categories: int, zipf_s: float, seed: int | str
    ) -> None:
        self.mix = mix
        self.categories = categories
        self.zipf = Zipf(products, zipf_s)
        self.rng = random.Random(seed)
        self._weights = list(itertools.accumulate(e.weight for e in mix))

    def pick(self) -> Endpoint:
        return self.mix[bisect.bisect_left(self._weights, self.rng.random() * self._weights[-1])]

    def fill(self, template: str) -> str:
        if "{" not in template:
            return template
        return template.format_map(
            {
                "product": self.zipf.draw(self.rng),
                "category": self.rng.randint(1, self.categories),
                "offset": self.rng.randrange(0, 10) * 20,
                "rand": self.rng.randrange(1_000_000),
            }
        )


def _opt(default: Any, help: str, web_ui: bool = True) -> Any:
    return field(default=default, metadata={"help": help, "web_ui": web_ui})


@dataclass
class LabOptions:
    """The options of the lab's locustfile, `loadtests/lab.py`: Locust custom options, so they
    are set on Locust's command line (`--arrival-rate 50`) and in its web UI alike.

    Registered by the locustfile from this one definition, and built into arguments by the
    harness (`argv`); values arrive as text from both and are checked by `parse`.
    """

    mix: str = _opt("", "traffic: an experiment (caching), a path (/healthz), JSON or @file.json")
    arrival_rate: float = _opt(0.0, "open model: requests/s arriving whatever the service does")
    arrivals: str = _opt("constant", "open model arrivals: constant or poisson")
    think_time: str = _opt("", "closed model: MIN,MAX seconds between a user's requests")
    request_timeout: float = _opt(30.0, "seconds before a request fails as timed out")
    seed: int = _opt(1, "seed of the traffic (which ids, which endpoints)")
    products: int = _opt(1000, "{product} ids are 1..N (Zipf-popular)")
    categories: int = _opt(10, "{category} ids are 1..N")
    zipf_s: float = _opt(1.0, "Zipf exponent of product popularity")
    ca_file: str = _opt("", "verify https against this CA certificate", web_ui=False)
    loopback_only: bool = _opt(False, "refuse hosts that are not this machine", web_ui=False)

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    @staticmethod
    def env_var(name: str) -> str:
        """The environment variable that sets an option, named as Locust names its own
        (`LOCUST_MIX`, `LOCUST_ARRIVAL_RATE`): how a container or a Kubernetes pod sets them."""
        return "LOCUST_" + name.upper()

    def argv(self) -> list[str]:
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out += [self.flag(f.name)] if value else []
            elif value != "":
                out += [self.flag(f.name), str(value)]
        return out

    @classmethod
    def parse(cls, values: dict[str, object]) -> LabOptions:
        """From Locust's parsed options (text from the command line or the web UI form)."""
        out = cls()
        for f in fields(cls):
            raw = values.get(f.name)
            if raw is None:
                continue
            default = getattr(out, f.name)
            try:
                if isinstance(default, bool):
                    value: object = raw if isinstance(raw, bool) else str(raw).lower() == "true"
                else:
                    value = type(default)(str(raw).strip() or default)
            except ValueError:
                kind = type(default).__name__
                raise LabError(f"{cls.flag(f.name)} {raw!r} is not a {kind}") from None
            setattr(out, f.name, value)
        out.check()
        return out

    def check(self) -> None:
        if self.arrival_rate < 0:
            raise LabError("--arrival-rate is requests per second, 0 (closed model) or more")
        if self.arrivals not in ("constant", "poisson"):
            raise LabError(f"--arrivals is constant or poisson, not {self.arrivals!r}")
        self.think_range()
        if self.request_timeout <= 0:
            raise LabError("--request-timeout must be positive")
        if self.products < 1 or self.categories < 1:
            raise LabError("--products and --categories must be at least 1")

    def think_range(self) -> tuple[float, float]:
        if not self.think_time.strip():
            return (0.0, 0.0)
        try:
            parts = [float(x) for x in self.think_time.split(",")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2) or min(parts) < 0 or parts[0] > parts[-1]:
            raise LabError(f"--think-time is MIN,MAX seconds (e.g. 0.5,2), not {self.think_time!r}")
        return (parts[0], parts[-1])

    def for_profile(self, profile: LoadProfile) -> LabOptions:
        """These options with the load model of `profile` (a harness run)."""
        open_model = profile.model == "open"
        think = ",".join(f"{t:g}" for t in profile.think_time) if profile.think_time else ""
        self.arrival_rate = float(profile.rate or 0) if open_model else 0.0
        self.arrivals = profile.arrival
        self.think_time = "" if open_model else think
        self.request_timeout = profile.timeout
        self.seed = profile.seed
        return self

"""The load's plain data: mixes, the lab locustfile's options, Zipf keys, the loopback rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness_helpers import ROOT

from perflab.errors import LabError
from perflab.experiments import mix as parse_mix
from perflab.loadgen import LocustSpec, lab_options, locust_command
from perflab.loopback import check_target, is_loopback
from perflab.traffic import Endpoint, LabOptions, LoadProfile, Traffic, Zipf


def test_a_mix_is_an_experiment_a_path_json_or_a_file(tmp_path: Path) -> None:
    assert parse_mix("caching") == [Endpoint("GET /products/{id}", "/products/{product}")]
    assert parse_mix("/healthz") == [Endpoint("GET /healthz", "/healthz")]
    spec = '[{"path": "/a", "weight": 3}, {"path": "/b", "method": "post", "json": {"x": 1}}]'
    a, b = parse_mix(spec)
    assert (a.name, a.weight) == ("GET /a", 3)
    assert (b.name, b.method, b.json) == ("POST /b", "POST", {"x": 1})
    f = tmp_path / "mix.json"
    f.write_text(json.dumps({"path": "/one", "headers": {"Authorization": "Bearer t"}}))
    (one,) = parse_mix(f"@{f}")
    assert one.headers == {"Authorization": "Bearer t"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "the traffic mix is empty"),
        ("nope", "unknown mix 'nope': give an experiment's name (queries, caching"),
        ("[", "--mix is not valid JSON"),
        ("[]", "--mix holds no endpoint"),
        ('[{"path": "x"}]', "an endpoint's path starts with '/'"),
        ('[{"path": "/x", "weight": 0}]', "an endpoint's weight is a positive number"),
        ('[{"path": "/x", "verb": "GET"}]', "unknown endpoint field(s) ['verb']"),
        ("@/nonexistent/mix.json", "cannot read the mix file /nonexistent/mix.json"),
    ],
)
def test_a_bad_mix_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(LabError) as err:
        parse_mix(spec)
    assert message in str(err.value)


def test_lab_options_round_trip_through_the_command_line() -> None:
    opts = LabOptions(mix="/x", arrival_rate=33.333333333333336, think_time="", seed=7)
    argv = opts.argv()
    assert argv[:2] == ["--mix", "/x"] and "--think-time" not in argv
    assert "--loopback-only" not in argv and "--ca-file" not in argv
    # what Locust's parser hands back: text, keyed by the option's dest
    parsed = {argv[i][2:].replace("-", "_"): argv[i + 1] for i in range(0, len(argv), 2)}
    assert LabOptions.parse(parsed) == opts  # no precision lost on the way
    assert "--loopback-only" in LabOptions(loopback_only=True).argv()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"arrival_rate": "fast"}, "--arrival-rate 'fast' is not a float"),
        ({"arrival_rate": "-1"}, "--arrival-rate is requests per second"),
        ({"arrivals": "bursty"}, "--arrivals is constant or poisson"),
        ({"think_time": "2,1"}, "--think-time is MIN,MAX seconds"),
        ({"products": "0"}, "--products and --categories must be at least 1"),
    ],
)
def test_bad_lab_options_are_refused(values: dict, message: str) -> None:
    with pytest.raises(LabError) as err:
        LabOptions.parse(values)
    assert message in str(err.value)


def test_harness_options_follow_the_profile_and_keep_the_mix_off_the_command_line(
    tmp_path: Path,
) -> None:
    mix = [Endpoint("POST /r", "/r", "POST", headers={"Authorization": "Bearer secret"})]
    open_prof = LoadProfile(model="open", rate=40, arrival="poisson", users=5, seed=3)
    # values as a dataset's metadata may hold them (text), and `extra` wins over the profile
    extra = {"products": "200", "categories": 7, "seed": 9}
    opts = lab_options(mix, open_prof, tmp_path / "mix.json", extra)
    assert (opts.arrival_rate, opts.arrivals) == (40, "poisson")
    assert (opts.seed, opts.products, opts.categories) == (9, 200, 7)
    assert opts.mix == f"@{tmp_path / 'mix.json'}"
    assert parse_mix(opts.mix) == mix
    argv = " ".join(opts.argv())
    assert "secret" not in argv  # the token is in the file, not in `ps` output
    closed = lab_options("caching", LoadProfile(think_time=(0.5, 2.0)), tmp_path / "unused.json")
    assert (closed.arrival_rate, closed.think_time, closed.mix) == (0.0, "0.5,2", "caching")
    with pytest.raises(LabError, match=r"unknown option.*token"):
        lab_options(mix, open_prof, tmp_path / "m.json", {"token": "x"})


def test_one_command_line_for_runs_workers_and_the_web_ui(tmp_path: Path) -> None:
    lab = LocustSpec(
        ROOT / "loadtests" / "lab.py",
        "http://127.0.0.1:8000",
        users=4,
        spawn_rate=4,
        run_time=2.5,
        files=tmp_path / "locust-x",
        samples=tmp_path / "samples.csv",
        options=["--mix", "/healthz"],
        workers=2,
        master_port=5557,
    )
    master = locust_command(lab)
    files = master[master.index("-f") + 1].split(",")
    assert files == [
        str(ROOT / "loadtests" / "lab.py"),
        str(ROOT / "loadtests" / "perflab_recorder.py"),
    ]
    assert master[master.index("--run-time") + 1] == "3s"  # whole seconds, rounded up
    assert master[master.index("--html") + 1] == str(tmp_path / "locust-x.html")
    assert "--master" in master and "--mix" in master and "--perflab-samples" in master
    worker = locust_command(lab, worker=True)
    assert "--worker" in worker and "--perflab-samples" in worker and "--mix" in worker
    assert "--headless" not in worker and "--csv" not in worker
    bare = locust_command(LocustSpec(Path("bare.py"), "http://127.0.0.1:1", 1, 1, web_port=9))
    assert bare[bare.index("-f") + 1] == "bare.py"  # no recorder asked for, none added
    assert "--headless" not in bare and bare[bare.index("--web-port") + 1] == "9"


def test_zipf_keys_favour_the_first_and_traffic_is_reproducible() -> None:
    keys = Zipf(100).sample(5000, seed=3)
    assert min(keys) >= 1 and max(keys) <= 100
    assert keys.count(1) > keys.count(2) > keys.count(10) > 0
    mix = [Endpoint("a", "/products/{product}", weight=9), Endpoint("b", "/c/{category}")]
    runs = []
    for _ in range(2):
        t = Traffic(mix, products=50, categories=5, zipf_s=1.0, seed="s")
        runs.append([t.fill(t.pick().path) for _ in range(200)])
    assert runs[0] == runs[1]
    assert 150 < sum(p.startswith("/products/") for p in runs[0]) < 200  # weight 9 : 1


def test_a_host_name_is_checked_once_and_its_address_handed_on() -> None:
    checked = check_target("http://localhost:8123/base")
    assert checked.url in ("http://127.0.0.1:8123/base", "http://[::1]:8123/base")
    assert checked.host_header == "localhost:8123"
    same = check_target("http://127.0.0.1:8123")
    assert (same.url, same.host_header) == ("http://127.0.0.1:8123", None)
    assert check_target("http://192.0.2.1", allow_remote=True).url == "http://192.0.2.1"
    with pytest.raises(LabError, match="not a loopback address"):
        check_target("http://192.0.2.1:80")
    with pytest.raises(LabError, match="is not an http"):
        check_target("ftp://127.0.0.1")
    assert is_loopback("http://localhost:1") and is_loopback("http://[::1]:1")
    assert not is_loopback("http://192.0.2.1") and not is_loopback("not a url")


def test_the_gevent_side_imports_nothing_heavy() -> None:
    """The plugin and the lab's locustfile run in every Locust process: no pandas, numpy, httpx."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'loadtests')!r})\n"
        "import perflab.locust_plugin, lab, journeys\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for heavy in ("pandas", "numpy", "httpx", "matplotlib", "scipy"):
        assert f"'{heavy}'" not in out.stdout, heavy

"""The deployment files say only true things: real settings, real modules, consistent wiring.

No container engine or cluster is needed: the compose file and the manifests are read as data
and checked against the code they deploy. Every environment variable set for our image must be
one the program in that container reads (the services' `Settings` fields and aliases, Locust's
own options, the lab locustfile's `LOCUST_*` options), with a value `Settings` accepts; every role a
container runs must exist in deploy/entrypoint.py, and the commands those roles run must name
modules and files that exist.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from perflab import experiments
from perflab.traffic import LabOptions
from perflab_services.catalog import datagen
from perflab_services.catalog.core.config import Settings as CatalogSettings
from perflab_services.catalog.core.security import DEMO_USERS
from perflab_services.gateway.core.config import Settings as GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = "perflab"
IMAGE_ROOT = "/opt/perflab"  # where the Dockerfile puts the entrypoint and the locustfiles


def _load_entrypoint():
    spec = importlib.util.spec_from_file_location("perflab_entrypoint", DEPLOY / "entrypoint.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = _load_entrypoint()


# --- what each program reads ----------------------------------------------------------------
def settings_env(settings: type[BaseSettings]) -> dict[str, str]:
    """The environment variables a pydantic-settings class reads, each with its field: the
    field's name under the prefix, or the names its aliases give instead."""
    prefix = settings.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({c.upper(): name for c in alias.choices if isinstance(c, str)})
        elif isinstance(alias, str):
            names[alias.upper()] = name
        else:
            names[f"{prefix}{name}".upper()] = name
    return names


def locust_env_names() -> set[str]:
    """Locust's own environment variables and the recorder plugin's (`LOCUST_PERFLAB_SAMPLES`),
    from its argument parser (in a subprocess: importing locust monkey-patches the interpreter
    with gevent)."""
    code = (
        "import json, perflab.locust_plugin; from locust.argument_parser import get_parser; "
        "print(json.dumps(sorted({a.env_var for a in get_parser()._actions "
        "if getattr(a, 'env_var', None)})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    names = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "LOCUST_HOST" in names  # the parser was really read
    return names


def locustfile_env_names() -> set[str]:
    """The variables the lab's locustfile reads: one per `LabOptions` field (`LOCUST_MIX`, ...)."""
    return {LabOptions.env_var(f.name) for f in dataclasses.fields(LabOptions)}


CATALOG_ROLES = {"catalog", "seed", "wait-for-data"}  # all read the catalog's Settings
LOCUST_ROLES = {"locust-master", "locust-worker"}


@pytest.fixture(scope="module")
def allowed_env() -> dict[str, set[str]]:
    catalog = set(settings_env(CatalogSettings))
    locust = locust_env_names() | locustfile_env_names()
    return {
        **dict.fromkeys(CATALOG_ROLES, catalog),
        "gateway": set(settings_env(GatewaySettings)),
        **dict.fromkeys(LOCUST_ROLES, locust),
    }


# --- the files, read as containers: (where, role, env) --------------------------------------
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def manifests() -> list[dict[str, Any]]:
    """Every resource kustomization.yaml lists (and it lists every manifest in the folder)."""
    k8s = DEPLOY / "k8s"
    listed = yaml.safe_load((k8s / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in k8s.glob("*.yaml") if p.stem != "kustomization")
    docs: list[dict[str, Any]] = []
    for name in listed:
        docs.extend(d for d in yaml.safe_load_all((k8s / name).read_text()) if d)
    return docs


def ours(image: str | None) -> bool:
    return image is not None and (image == IMAGE or image.startswith(IMAGE + ":"))


def compose_containers() -> list[tuple[str, str, dict[str, str]]]:
    out = []
    for name, svc in compose()["services"].items():
        if ours(svc.get("image")):
            env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
            out.append((f"compose:{name}", svc["command"][0], env))
    return out


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            specs.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return specs


def k8s_secret() -> dict[str, str]:
    """What `entrypoint.py k8s-secret` generates: the Secret the manifests refer to."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert entrypoint.main(["k8s-secret"]) == 0
    secret = json.loads(buf.getvalue())
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "perflab-secrets"
    return secret["stringData"]


def k8s_containers() -> list[tuple[str, str, dict[str, str]]]:
    """Our containers in the manifests, with their environment resolved (ConfigMaps, Secret)."""
    docs = manifests()
    configmaps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    secret = k8s_secret()
    out = []
    for where, spec in pod_specs(docs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            if not ours(c["image"]):
                continue
            env: dict[str, str] = {}
            for source in c.get("envFrom", []):
                name = source["configMapRef"]["name"]
                assert name in configmaps, f"{where}/{c['name']}: no ConfigMap {name}"
                env.update(configmaps[name])
            for item in c.get("env", []):
                if "value" in item:
                    env[item["name"]] = str(item["value"])
                else:
                    ref = item["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "perflab-secrets" and ref["key"] in secret, item
                    env[item["name"]] = secret[ref["key"]]
            out.append((f"k8s:{where}/{c['name']}", c["args"][0], env))
    return out


ALL = [*compose_containers(), *k8s_containers()]


# --- the tests ---------------------------------------------------------------------------------
def test_the_files_parse_and_deploy_every_role():
    assert compose()["services"]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests()}
    for name in ("catalog", "gateway", "redis", "postgres", "locust-master", "locust-worker"):
        assert ("Deployment", name) in kinds, name
    for name in ("catalog", "gateway", "redis", "postgres", "locust-master"):
        assert ("Service", name) in kinds, name
    roles = {role for _, role, _ in ALL}
    assert roles == {"catalog", "gateway", "seed", "wait-for-data", *LOCUST_ROLES}
    in_compose = {role for where, role, _ in ALL if where.startswith("compose:")}
    assert in_compose >= {"catalog", "gateway", "seed", *LOCUST_ROLES}


def test_every_role_a_container_runs_exists():
    known = {*entrypoint.EXEC_ROLES, *entrypoint.RUN_ROLES}
    for where, role, _ in ALL:
        assert role in known, f"{where} runs {role!r}, which deploy/entrypoint.py does not know"


@pytest.mark.parametrize("where,role,env", ALL, ids=[w for w, _, _ in ALL])
def test_every_variable_set_for_our_services_is_a_real_setting(where, role, env, allowed_env):
    unknown = sorted(set(env) - allowed_env[role])
    assert not unknown, f"{where} ({role}) sets variables nothing reads: {unknown}"


@pytest.mark.parametrize(
    "where,role,env",
    [c for c in ALL if c[1] not in LOCUST_ROLES],
    ids=[w for w, r, _ in ALL if r not in LOCUST_ROLES],
)
def test_the_values_are_valid_settings(where, role, env, monkeypatch):
    """`Settings` reads the container's environment, accepts it (types, choices) and ends up
    with the values the file meant."""
    settings_cls = GatewaySettings if role == "gateway" else CatalogSettings
    fields = settings_env(settings_cls)
    for name in {*settings_env(CatalogSettings), *settings_env(GatewaySettings)}:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_cls()
    for name, value in env.items():
        got = getattr(settings, fields[name])
        got = got.get_secret_value() if hasattr(got, "get_secret_value") else got
        assert str(got).lower() == value.lower().rstrip("/"), (where, name)


def test_the_locust_config_matches_the_locustfile_and_the_seeded_dataset():
    sizes = []
    svc = compose()["services"]
    sizes.append(svc["seed"]["command"][svc["seed"]["command"].index("--size") + 1])
    job = next(d for d in manifests() if d["kind"] == "Job" and d["metadata"]["name"] == "seed")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    sizes.append(args[args.index("--size") + 1])
    configs = [env for _, role, env in ALL if role in LOCUST_ROLES]
    assert configs and len(set(sizes)) == 1
    size = datagen.SIZES[sizes[0]]
    for env in configs:
        values = {
            f.name: env[LabOptions.env_var(f.name)]
            for f in dataclasses.fields(LabOptions)
            if LabOptions.env_var(f.name) in env
        }
        options = LabOptions.parse(values)  # what the locustfile does with them
        # ids in the load must exist in the seeded dataset, or the load measures 404s
        assert options.products == size.products
        assert options.categories == size.categories
        for entry in experiments.mix(options.mix):
            assert entry.path.startswith("/")


def test_the_roles_run_modules_and_files_that_exist():
    for role, build in entrypoint.EXEC_ROLES.items():
        args = ["--master", "locust-master"] if role == "locust-worker" else []
        argv = build(args)
        assert argv[0] == sys.executable and argv[1] == "-m", role
        assert importlib.util.find_spec(argv[2]) is not None, f"{role}: no module {argv[2]}"
        if "--factory" in argv:
            module, _, attr = argv[argv.index("--factory") + 1].partition(":")
            assert callable(getattr(importlib.import_module(module), attr)), role
        if "-f" in argv:
            locustfile = Path(argv[argv.index("-f") + 1])
            assert locustfile.is_file() and locustfile.is_relative_to(ROOT), locustfile
    from perflab.cli import build_parser

    # the worker role is `perflab worker`: later arguments win, a master without port gets 5557
    worker = entrypoint.locust_worker_argv(["--master", "10.0.0.5:6000", "--wait", "30"])
    args = build_parser().parse_args(worker[3:])
    assert (args.command, args.master, args.wait) == ("worker", "10.0.0.5:6000", 30)
    worker = entrypoint.locust_worker_argv(["--master=locust-master"])
    assert build_parser().parse_args(worker[3:]).master == "locust-master:5557"
    with pytest.raises(SystemExit, match="needs --master"):
        entrypoint.locust_worker_argv([])
    with pytest.raises(SystemExit, match="HOST:PORT"):
        entrypoint.locust_worker_argv(["--master", "host:port"])


def test_several_workers_in_one_container_share_their_metrics():
    env: dict[str, str] = {}
    entrypoint.multiprocess_metrics(["--host", "0.0.0.0"], env)
    assert env == {}
    entrypoint.multiprocess_metrics(["--workers", "2"], env)
    folder = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    assert folder.is_dir() and not any(folder.iterdir())
    folder.rmdir()
    mine = {"PROMETHEUS_MULTIPROC_DIR": "/somewhere"}
    entrypoint.multiprocess_metrics(["--workers=3"], mine)
    assert mine == {"PROMETHEUS_MULTIPROC_DIR": "/somewhere"}  # a folder you chose is kept


def test_an_unknown_role_is_one_line_and_exit_2(capsys):
    assert entrypoint.main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "catalog" in err


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_copies_what_exists_and_runs_the_entrypoint_as_non_root():
    steps = dockerfile()
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    copied: dict[str, str] = {}
    for word, rest in steps:
        if word == "COPY" and not rest.startswith("--from"):
            *sources, dest = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                copied[dest.rstrip("/")] = src
    # the package is installed from the repository, not in editable mode
    assert any(w == "RUN" and re.search(r"pip install \.(\s|$)", r) for w, r in steps)
    entry = json.loads(next(r for w, r in final if w == "ENTRYPOINT"))
    cmd = json.loads(next(r for w, r in final if w == "CMD"))
    assert entry[0] == "python" and copied[entry[1]] == "deploy/entrypoint.py"
    assert cmd[0] in entrypoint.EXEC_ROLES
    # the entrypoint finds the locustfiles where the image has them: the repository's layout
    locust_dir = str(Path(entry[1]).parent.parent / "loadtests")
    assert copied[locust_dir] == "loadtests" and entry[1].startswith(IMAGE_ROOT)
    user = next(r for w, r in final if w == "USER")
    assert user.split(":")[0] not in ("0", "root")
    # every variable the image sets is Python's, the shell's, or read by our code
    for word, rest in final:
        if word == "ENV":
            for name in re.findall(r"(\w+)=", rest):
                if name in ("PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"):
                    continue
                assert any(name in p.read_text() for p in (ROOT / "perflab").glob("*.py")), name


def test_the_dockerignore_lets_through_what_the_dockerfile_copies():
    rules = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert rules[rules.index("*")] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for word, rest in dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            for src in rest.split()[:-1]:
                assert src.rstrip("/").lstrip("./") in allowed, src


def test_compose_limits_health_and_wiring():
    services = compose()["services"]
    for name, svc in services.items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), f"{name}: no CPU and memory limits"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
    for name in ("catalog", "gateway", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    for name in ("catalog", "gateway"):
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", f"{IMAGE_ROOT}/deploy/entrypoint.py"]
        assert test[3] in entrypoint.RUN_ROLES
    # the gateway talks to the catalog, the workers to the master, by service name
    assert services["gateway"]["environment"]["GATEWAY_CATALOG_URL"] == "http://catalog:8000"
    worker = services["locust-worker"]["command"]
    assert worker[worker.index("--master") + 1].split(":")[0] in services


def test_kubernetes_wiring_probes_and_resources():
    docs = manifests()
    secret = k8s_secret()
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] == "Deployment"}
    for d in docs:
        if d["kind"] == "Deployment":
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert d["spec"]["selector"]["matchLabels"].items() <= labels.items(), d
    for d in docs:
        if d["kind"] != "Service":
            continue
        matches = [
            t
            for t in pods.values()
            if d["spec"]["selector"].items() <= t["metadata"]["labels"].items()
        ]
        assert matches, f"Service {d['metadata']['name']} selects no pods"
        port_names = {
            p["name"] for t in matches for c in t["spec"]["containers"] for p in c.get("ports", [])
        }
        for port in d["spec"]["ports"]:
            assert port["targetPort"] in port_names, (d["metadata"]["name"], port)
    for where, spec in pod_specs(docs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{where}/{c['name']}: {kind}"
            if ours(c["image"]):
                assert spec["securityContext"]["runAsNonRoot"] is True, where
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "perflab-secrets"
                assert {i["key"] for i in volume["secret"]["items"]} <= set(secret)
    for name in ("catalog", "gateway"):
        container = pods[name]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz", name
    catalog = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "catalog"
    )
    assert catalog["spec"]["replicas"] >= 2
    init = catalog["spec"]["template"]["spec"]["initContainers"]
    assert [c["args"][0] for c in init] == ["wait-for-data"]


def test_the_generated_secret_holds_what_the_catalog_and_postgres_read():
    secret = k8s_secret()
    assert json.loads(secret[".demo-users.json"]).keys() == DEMO_USERS.keys()
    assert len(bytes.fromhex(secret[".jwt-secret"])) == 32
    assert f":{secret['POSTGRES_PASSWORD']}@postgres:5432/" in secret["DATABASE_URL"]
    assert secret != k8s_secret(), "every call makes new secrets"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_kustomize_renders_the_manifests():
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(rendered) == len(manifests())
    assert all(
        d["metadata"].get("namespace") == "perflab" for d in rendered if d["kind"] != "Namespace"
    )


# --- every sample kept: the master writes them into a volume, the workers send them -----------
SAMPLES_ENV = "LOCUST_PERFLAB_SAMPLES"  # the recorder plugin's --perflab-samples, from the env


def test_the_samples_variable_is_the_one_the_recorder_plugin_reads():
    assert SAMPLES_ENV in locust_env_names()
    text = (ROOT / "perflab" / "locust_plugin.py").read_text()
    assert f'SAMPLES_ENV = "{SAMPLES_ENV}"' in text and "env_var=SAMPLES_ENV" in text


def _worker_command(argv: list[str]) -> tuple[str, int]:
    """The master a container's `locust-worker` role connects to, read the way `perflab worker`
    reads it, after checking that the role runs `perflab worker` (which sends every sample)."""
    from perflab.cli import build_parser, cmd_worker
    from perflab.loadgen import split_host_port

    assert argv[0] == "locust-worker", argv
    command = entrypoint.locust_worker_argv(argv[1:])
    assert command[1:4] == ["-m", "perflab.cli", "worker"], command
    args = build_parser().parse_args(command[3:])
    assert args.fn is cmd_worker
    assert Path(args.locustfile) == entrypoint.LOCUSTFILE  # the master's own locustfile
    return split_host_port(args.master)


def _image_owned_dirs() -> set[str]:
    """Folders the final image creates owned by its (non-root) user."""
    steps = dockerfile()
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    owned: set[str] = set()
    for word, rest in final:
        for cmd in rest.split("&&") if word == "RUN" else []:
            parts = cmd.split()
            if parts[:2] == ["install", "-d"] and "-o" in parts:
                owned |= {p for p in parts if p.startswith("/")}
    return owned


def test_compose_keeps_every_sample_in_a_volume_and_runs_perflab_workers():
    spec = compose()
    services = spec["services"]
    masters = [n for n, s in services.items() if ours(s.get("image")) and
               s["command"][0] == "locust-master"]  # fmt: skip
    assert masters == ["locust-master"]
    master = services["locust-master"]
    samples = Path(master["environment"][SAMPLES_ENV])
    mounts = dict(reversed(v.split(":")[:2]) for v in master.get("volumes", []))
    folder = str(samples.parent)
    assert folder in mounts, f"{samples} is not in a volume: it would die with the container"
    assert mounts[folder] in (spec.get("volumes") or {}), "a named volume, not a bind mount"
    # a new named volume takes the owner of the image's folder: the image's user must own it,
    # or a master that runs as that user (read-only root) cannot write a single sample
    assert folder in _image_owned_dirs()
    workers = [(n, s) for n, s in services.items() if ours(s.get("image")) and
               s["command"][0] == "locust-worker"]  # fmt: skip
    assert workers
    for name, worker in workers:
        host, port = _worker_command(worker["command"])
        assert host in masters and port == entrypoint.LOCUST_MASTER_PORT, name
        assert SAMPLES_ENV not in (worker.get("environment") or {}), "a worker keeps no file"


def test_kubernetes_keeps_every_sample_in_a_claim_and_runs_perflab_workers():
    docs = manifests()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    master = deployments["locust-master"]
    pod = master["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "locust-master"
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    samples = Path(env[SAMPLES_ENV])
    mount = next(
        (m for m in container["volumeMounts"] if m["mountPath"] == str(samples.parent)), None
    )
    assert mount is not None, f"{samples} is not in a volume: it would die with the pod"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "persistentVolumeClaim" in volume, "an emptyDir dies with the pod"
    assert volume["persistentVolumeClaim"]["claimName"] in claims
    # the volume is writable by the image's user, and one master pod at a time holds it
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    assert master["spec"]["replicas"] == 1
    assert master["spec"]["strategy"]["type"] == "Recreate"
    # the workers reach the master through its Service, on the port it listens to them on
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    worker = deployments["locust-worker"]["spec"]["template"]["spec"]["containers"][0]
    host, port = _worker_command(worker["args"])
    svc = services[host]
    labels = master["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (listen,) = [p for p in svc["spec"]["ports"] if p["port"] == port]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[listen["targetPort"]] == entrypoint.LOCUST_MASTER_PORT
    assert SAMPLES_ENV not in {e["name"] for e in worker.get("env", [])}
    for ref in worker.get("envFrom", []):  # nor through the ConfigMap both share
        config = next(d for d in docs if d["kind"] == "ConfigMap" and
                      d["metadata"]["name"] == ref["configMapRef"]["name"])  # fmt: skip
        assert SAMPLES_ENV not in config.get("data", {})

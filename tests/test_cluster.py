"""The cluster configs: cluster.yaml is a valid Ray 2.60 cluster-launcher config with the security settings we
promise, and the study autoscales on a fake multi-node cluster (tests/fake_cluster.yaml) on this machine.

No cloud is touched. The fake cluster's Ray processes are found by the cluster's own temp folder and stopped
by process id at the end, whatever happens: not with `ray stop --force`, which would also kill every other
Ray instance of this user on the machine (other test runs included).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_YAML = ROOT / "cluster.yaml"
FAKE_YAML = Path(__file__).resolve().parent / "fake_cluster.yaml"
RAY_VERSION = "2.60"


# ---------------------------------------------------------------------------------------------------------
# cluster.yaml: schema and security content
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_text() -> str:
    return CLUSTER_YAML.read_text()


@pytest.fixture(scope="module")
def cluster(cluster_text) -> dict:
    return yaml.safe_load(cluster_text)


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def walk(value, path=""):
    """Every (path, leaf) of a parsed YAML document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, value


def test_installed_ray_is_the_configured_version():
    import ray

    assert ray.__version__.startswith(RAY_VERSION + ".")


def test_cluster_yaml_matches_ray_schema(cluster):
    import jsonschema

    jsonschema.validate(cluster, ray_schema())


def test_cluster_yaml_passes_ray_config_checks(cluster):
    """What `ray up` does before it talks to AWS: fill in the provider's defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_schema_check_is_not_vacuous(cluster):
    import jsonschema

    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["min_worker"] = 0  # a typo Ray must refuse
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ray_schema())
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5  # resources are whole numbers
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ray_schema())


def test_node_types(cluster):
    types = cluster["available_node_types"]
    head = cluster["head_node_type"]
    assert cluster["cluster_name"] == "healthgym-study"
    assert cluster["provider"]["type"] == "aws"
    assert head in types
    workers = {name: t for name, t in types.items() if name != head}
    gpu = {name: t for name, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu, "no GPU worker node type"
    for t in gpu.values():
        assert t["min_workers"] == 0
        assert t["max_workers"] >= 1
        assert re.match(r"(g|p)\d", t["node_config"]["InstanceType"]), t["node_config"]["InstanceType"]
    assert types[head]["resources"].get("GPU", 0) == 0
    assert types[head]["resources"].get("CPU") == 0, "trials must not be placed on the head"
    assert cluster["max_workers"] >= sum(t["max_workers"] for t in gpu.values()) > 0


def test_docker_image_is_ray_2_60_gpu(cluster):
    image = cluster["docker"]["image"]
    assert image.startswith(f"rayproject/ray:{RAY_VERSION}.")
    assert image.endswith("-py311-gpu")
    assert "ray-ml" not in image


def test_setup_installs_the_project_at_an_exact_commit(cluster):
    installs = [c for c in cluster["setup_commands"] if "pip install" in c]
    assert any(
        "healthgym-tune @ git+https://github.com/" in c and re.search(r"@[A-Z_a-f0-9]{7,}'", c) for c in installs
    ), installs


def test_credentials_only_from_instance_profiles(cluster, cluster_text):
    for name, t in cluster["available_node_types"].items():
        profile = t["node_config"].get("IamInstanceProfile")
        assert profile and (profile.get("Arn") or profile.get("Name")), f"{name} has no IamInstanceProfile"
    lowered = cluster_text.lower()
    for secret in ("aws_access_key", "aws_secret", "secret_access_key", "access_key_id", "aws_session_token"):
        assert secret not in lowered, secret
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", cluster_text), "an AWS access key id"
    assert "BEGIN RSA PRIVATE KEY" not in cluster_text and "BEGIN OPENSSH PRIVATE KEY" not in cluster_text
    assert "ssh_private_key" not in cluster.get("auth", {})


def test_nothing_open_to_the_internet(cluster, cluster_text):
    """Every node type brings its own security group, so Ray creates none: a group Ray creates always gets
    SSH from 0.0.0.0/0 on top of provider.security_group.IpPermissions (aws/config.py in 2.60)."""
    for path, leaf in walk(cluster):
        assert not (isinstance(leaf, str) and ("0.0.0.0/0" in leaf or "::/0" in leaf)), path
    for name, t in cluster["available_node_types"].items():
        assert t["node_config"].get("SecurityGroupIds"), f"{name}: Ray would create a world-open SSH group"
    assert "security_group" not in cluster["provider"]
    assert "--dashboard-host=0.0.0.0" not in " ".join(cluster["head_start_ray_commands"])
    # The documented security-group recipe opens only SSH, only to one address, plus the group to itself.
    rules = [line for line in cluster_text.splitlines() if "authorize-security-group-ingress" in line]
    assert rules
    for rule in rules:
        args = shlex.split(rule.lstrip("# "))
        opts = dict(zip(args[3::2], args[4::2]))
        if "--cidr" in opts:
            assert opts["--protocol"] == "tcp" and opts["--port"] == "22", rule
            assert opts["--cidr"].endswith("/32") and not opts["--cidr"].startswith("0.0.0.0"), rule
        else:
            assert opts.get("--source-group") == opts["--group-id"], rule


def test_ray_creates_no_security_group(cluster):
    """Ray's own code path (`ray up`): with every node type's groups given it returns before any AWS call."""
    pytest.importorskip("boto3", reason="the AWS provider module imports boto3")
    from ray.autoscaler._private.aws import config as aws_config

    assert aws_config._configure_security_group(copy.deepcopy(cluster)) == cluster


def test_documents_the_user_path(cluster_text):
    for step in (
        "ray up cluster.yaml",
        "ray submit",
        "ray dashboard cluster.yaml",
        "ray job submit --address http://127.0.0.1:8265",
        "ray exec cluster.yaml",
        "ray down cluster.yaml",
        "--storage s3://",
        "provider {type: gcp",
        "provider {type: local",
        "head_ip",
        "worker_ips",
        "guestAccelerators",
        "machineType",
        "project_id",
    ):
        assert step in cluster_text, step


# ---------------------------------------------------------------------------------------------------------
# The fake autoscaling cluster
# ---------------------------------------------------------------------------------------------------------


def test_fake_cluster_yaml_is_a_valid_autoscaling_config():
    from ray.autoscaler._private.util import validate_config

    cfg = yaml.safe_load(FAKE_YAML.read_text())
    assert cfg["provider"]["type"] == "fake_multinode"
    assert cfg["head_node_type"] == "ray.head.default"  # the name the fake provider gives its head
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] == 1 and gpu["min_workers"] == 0 and gpu["max_workers"] == 3
    # What the autoscaler (monitor.py) checks when it loads the file: the schema, not prepare_config, whose
    # fake_multinode defaults (fake_multi_node/example.yaml) are missing from the 2.60 wheel.
    validate_config(cfg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def processes_of(temp_dir: str, tag: str) -> list[int]:
    """Ids of this fake cluster's processes: those whose command line names its temp folder or whose
    environment carries its tag, and all their descendants (renamed workers such as ray::IDLE included)."""
    parent, roots = {}, set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        pid = int(d.name)
        try:
            stat = (d / "stat").read_text()
            parent[pid] = int(stat.rsplit(")", 1)[1].split()[1])
            if temp_dir in (d / "cmdline").read_bytes().decode(errors="replace"):
                roots.add(pid)
            elif tag.encode() in (d / "environ").read_bytes():
                roots.add(pid)
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(roots), list(roots)
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found.add(child)
                frontier.append(child)
    found.discard(os.getpid())
    return sorted(found)


def stop_cluster(temp_dir: str, tag: str, grace_s: float = 8.0) -> list[int]:
    """Stop this fake cluster's processes by id (SIGTERM, then SIGKILL); returns the ids that were running."""
    pids = processes_of(temp_dir, tag)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(temp_dir, tag) if sig == signal.SIGKILL else pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and processes_of(temp_dir, tag):
            time.sleep(0.25)
        if not processes_of(temp_dir, tag):
            break
    return pids


NODES_SCRIPT = """
import json, ray
ray.init(address="{address}", log_to_driver=False, logging_level="ERROR")
print("NODES=" + json.dumps([{{"alive": n["Alive"], "resources": n["Resources"],
                               "labels": n.get("Labels", {{}})}} for n in ray.nodes()]))
ray.shutdown()
"""


@pytest.fixture
def fake_cluster(tmp_path):
    """A fake multi-node Ray cluster from tests/fake_cluster.yaml; yields (address, env for clients)."""
    import ray._private.services as services

    temp_dir = tempfile.mkdtemp(prefix="hgfc", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    tag = f"HEALTHGYM_FAKE_CLUSTER_{os.getpid()}_{int(time.time())}"
    port = free_port()
    ip = services.get_node_ip_address()
    address = f"{ip}:{port}"
    cfg = yaml.safe_load(FAKE_YAML.read_text())
    cfg["provider"]["gcs_address"] = address  # the fake provider's workers otherwise look for port 6379
    config_path = tmp_path / "fake_cluster.yaml"
    config_path.write_text(yaml.safe_dump(cfg))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "CUDA_VISIBLE"))}
    env.update(
        {
            # Token authentication on, as for users; a fresh token for this cluster and its clients only.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": os.urandom(32).hex(),
            "RAY_USAGE_STATS_ENABLED": "0",
            "HEALTHGYM_CLUSTER_TAG": tag,
            "PYTHONPATH": str(ROOT),
        }
    )
    head_env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "2"}
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        f"--port={port}",
        f"--autoscaling-config={config_path}",
        "--num-cpus=0",
        "--num-gpus=0",
        "--object-store-memory=200000000",
        "--include-dashboard=false",
        f"--temp-dir={temp_dir}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--disable-usage-stats",
    ]
    try:
        started = subprocess.run(cmd, env=head_env, cwd=tmp_path, capture_output=True, text=True, timeout=90)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        client_env = {**env, "RAY_ADDRESS": address}
        yield address, client_env, temp_dir
    finally:
        stop_cluster(temp_dir, tag)
        left = processes_of(temp_dir, tag)
        subprocess.run(["rm", "-rf", temp_dir], check=False)
        assert not left, f"Ray processes left running: {left}"


def cluster_nodes(address: str, env: dict) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-c", NODES_SCRIPT.format(address=address)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("NODES=")]
    assert out.returncode == 0 and line, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(line[-1][len("NODES=") :])


@pytest.mark.slow
def test_study_autoscales_on_a_fake_gpu_cluster(fake_cluster, tmp_path):
    address, env, temp_dir = fake_cluster
    storage = tmp_path / "results"
    cmd = [
        sys.executable,
        str(ROOT / "study" / "run.py"),
        "--space",
        "critic",
        "--smoke",
        "--address",
        "auto",
        "--gpus-per-trial",
        "0.5",
        "--cpus-per-trial",
        "0.5",
        "--max-concurrent",
        "4",
        "--storage",
        str(storage),
        "--name",
        "fake",
        "--no-dashboard",
        "--export-patients",
        "20",
    ]
    # --max-concurrent 4: the driver sizes Tune's pending-trial queue from the CPUs it sees at start (none: the
    # head advertises 0), which would let only one trial wait, and so ask for one worker, at a time.
    t0 = time.monotonic()
    try:
        run = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as e:
        out = [(x.decode(errors="replace") if isinstance(x, bytes) else x or "")[-3000:] for x in (e.stdout, e.stderr)]
        monitor = Path(temp_dir) / "session_latest" / "logs" / "monitor.err"
        tail = monitor.read_text()[-2000:] if monitor.exists() else ""
        pytest.fail(f"study timed out\n{out[0]}\n--- stderr ---\n{out[1]}\n--- autoscaler monitor.err ---\n{tail}")
    elapsed = time.monotonic() - t0
    log = run.stdout[-6000:] + "\n--- stderr ---\n" + run.stderr[-6000:]
    # Count the nodes while the cluster is still up (the fixture stops it afterwards).
    nodes = cluster_nodes(address, env)
    assert run.returncode == 0, log

    board = pd.read_parquet(storage / "fake" / "leaderboard.parquet")
    assert len(board) == 4, board
    assert not (board["status"] == "error").any(), board[["trial_id", "status"]]
    assert set(board["status"]) <= {"completed", "pruned", "diverged"}

    gpu_nodes = [n for n in nodes if n["resources"].get("GPU", 0) >= 1]
    heads = [n for n in nodes if n["resources"].get("GPU", 0) == 0]
    print(
        f"\nstudy {elapsed:.0f} s; nodes: {len(heads)} head + {len(gpu_nodes)} gpu_worker added by the autoscaler "
        f"({sum(n['alive'] for n in gpu_nodes)} still alive)"
    )
    assert len(heads) == 1
    assert len(gpu_nodes) >= 1, nodes  # trials cannot run on the head: every one ran on an added worker
    assert len(nodes) > 1
    assert len(gpu_nodes) <= 3  # max_workers

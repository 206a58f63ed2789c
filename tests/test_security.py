"""Security of a local study: the Ray dashboard listens on loopback only and keeps token authentication."""

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.study_helpers import ROOT, env, kill_session

PROBE = """
import json, ray, sys, time
sys.path.insert(0, {root!r})
from study.tuning import start_ray
start_ray(None, dashboard=True)
url = ray._private.worker.global_worker.node.address_info["webui_url"]
print(json.dumps({{"url": url}}), flush=True)
time.sleep(120)
"""


def listening(port: int) -> list[str]:
    """Local addresses listening on a TCP port, from /proc/net/tcp (IPv4) and tcp6."""
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # LISTEN
                found.append(addr)
    return found


@pytest.mark.slow
def test_local_dashboard_is_loopback_only_and_needs_the_token(tmp_path):
    p = subprocess.Popen(
        [sys.executable, "-c", PROBE.format(root=str(ROOT))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env(),
    )
    try:
        line = p.stdout.readline()
        assert line, p.stderr.read()[-2000:]
        url = json.loads(line)["url"]
        host, port = url.rsplit(":", 1)
        assert host == "127.0.0.1"
        addrs = listening(int(port))
        assert addrs and all(a in ("0100007F", "00000000000000000000000001000000") for a in addrs), (
            addrs
        )  # 127.0.0.1 / ::1
        # Token authentication is on: the API refuses a request without the token.
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=10)
        assert e.value.code == 401
        # ... and answers with it (the token the README points to).
        from pathlib import Path

        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/version", headers={"Authorization": f"Bearer {token}"}
        )
        assert urllib.request.urlopen(req, timeout=10).status == 200
    finally:
        kill_session(p.pid)

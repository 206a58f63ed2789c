"""The fetch command end to end: a local HTTP server serves a cohort, the CLI downloads and validates it."""

import functools
import http.server
import subprocess
import sys
import threading

import pytest

from healthgym_core.data.simulate import simulate_cohort


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    simulate_cohort(30, seed=2).to_csv(root / "good.csv", index=False)
    bad = simulate_cohort(30, seed=2)
    bad.loc[10, "Ethnic"] = 9
    bad.to_csv(root / "bad.csv", index=False)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def fetch(url, cache):
    return subprocess.run(
        [sys.executable, "-m", "healthgym_core.data", "fetch", "--url", url, "--cache-dir", str(cache), "--quiet"],
        capture_output=True,
        text=True,
    )


def test_fetch_prints_the_cached_path_and_reuses_it(served, tmp_path):
    cache = tmp_path / "cache"
    r = fetch(f"{served}/good.csv", cache)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(cache / "good.csv")
    first = (cache / "good.csv").stat().st_mtime_ns
    r = fetch(f"{served}/good.csv", cache)
    assert r.returncode == 0 and (cache / "good.csv").stat().st_mtime_ns == first


def test_fetch_of_an_invalid_cohort_leaves_nothing(served, tmp_path):
    cache = tmp_path / "cache"
    r = fetch(f"{served}/bad.csv", cache)
    assert r.returncode == 2
    assert "column 'Ethnic'" in r.stderr and "unknown code" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not cache.exists() or list(cache.iterdir()) == []


def test_fetch_refuses_plain_http_to_a_remote_host(tmp_path):
    r = fetch("http://example.com/cohort.csv", tmp_path / "cache")
    assert r.returncode == 2 and "https" in r.stderr

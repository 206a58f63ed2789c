"""fetch() against a local threaded HTTP server on 127.0.0.1 (figshare is unreachable from the test machines)."""

from __future__ import annotations

import http.server
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from healthgym_core.data import download
from healthgym_core.data.download import (
    DEFAULT_FILENAME,
    DEFAULT_URL,
    cached_path,
    default_cache_dir,
    fetch,
    filename_from_url,
)
from healthgym_core.errors import DataError

HEADER = (
    "VL,CD4,Rel CD4,Gender,Ethnic,Base Drug Combo,Comp. INI,Comp. NNRTI,Extra PI,Extra pk-En,"
    "VL (M),CD4 (M),Drug (M),PatientID,Timestep"
)


def check_header(path: Path) -> None:
    """The validator used throughout: the file must start with the v2.0 header line."""
    with open(path, "rb") as fh:
        first = fh.readline().rstrip(b"\r\n")
    if first.decode("utf-8", "replace") != HEADER:
        raise DataError(str(path), "not a Health Gym v2.0 ART-for-HIV file: unexpected header line")


def _make_cohort() -> bytes:
    rows = []
    for pid in range(800):  # 800 patients x 60 months, about 3.2 MB
        for t in range(60):
            rows.append(
                f"{38.78 + t:.2f},{466.4 - t:.2f},{36.35:.3f},1.0,3.0,0.0,3.0,1.0,5.0,0.0,0.0,1.0,1.0,{pid},{t}"
            )
    return (HEADER + "\n" + "\n".join(rows) + "\n").encode()


COHORT = _make_cohort()
BAD = b"a,b,c\n" + b"1,2,3\n" * 50_000


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(self.path)
        route = self.path.lstrip("/").split("/", 1)[0]
        getattr(self, "route_" + route.replace("-", "_"), self.route_missing)()

    # -- whole files
    def _send_whole(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_ok(self) -> None:
        self._send_whole(COHORT)

    def route_bad(self) -> None:
        self._send_whole(BAD)

    def route_empty(self) -> None:
        self._send_whole(b"")

    def route_missing(self) -> None:
        self.send_error(404, "Not Found")

    # -- cut transfers
    def route_half(self) -> None:
        """Announce the full length, send half, close the connection."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(COHORT)))
        self.end_headers()
        self.wfile.write(COHORT[: len(COHORT) // 2])
        self.wfile.flush()
        self.close_connection = True

    def route_reset(self) -> None:
        """Announce the full length, send some, then abort with a TCP reset."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(COHORT)))
        self.end_headers()
        self.wfile.write(COHORT[:200_000])
        self.wfile.flush()
        time.sleep(0.05)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    # -- no Content-Length
    def _send_chunked(self, body: bytes, *, cut: bool = False) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        step = 256 * 1024
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if cut and i >= len(body) // 2:
                self.wfile.write(b"%x\r\n%s" % (step, body[:100]))  # a chunk that never finishes
                self.close_connection = True
                return
        self.wfile.write(b"0\r\n\r\n")

    def route_chunked(self) -> None:
        self._send_chunked(COHORT)

    def route_chunked_cut(self) -> None:
        self._send_chunked(COHORT, cut=True)

    def route_close(self) -> None:
        """HTTP/1.0 style: no Content-Length, the body ends when the server closes the connection."""
        self.protocol_version = "HTTP/1.0"
        self.send_response(200)
        self.end_headers()
        self.wfile.write(COHORT)
        self.close_connection = True

    # -- redirects and slowness
    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_redirect_local(self) -> None:
        self._redirect("/ok/cohort.csv")

    def route_redirect_remote(self) -> None:
        self._redirect("http://example.com/cohort.csv")

    def route_redirect_file(self) -> None:
        self._redirect("file:///etc/passwd")

    def route_slow(self) -> None:
        time.sleep(1.5)
        try:
            self._send_whole(COHORT)
        except OSError:
            pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001  (quiet: cut connections are the point)
        pass

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture(scope="module")
def _server_module():
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(_server_module):
    _server_module.requests.clear()
    return _server_module


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache folder under tmp_path; $HEALTHGYM_CACHE points under tmp_path too, so the real cache is never used."""
    monkeypatch.setenv("HEALTHGYM_CACHE", str(tmp_path / "env-cache"))
    return tmp_path / "cache"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", refuse)


# ------------------------------------------------------------------------------------------------- success paths
def test_normal_download(server, cache):
    path = fetch(server.url("/ok/cohort.csv"), cache, validate=check_header, progress=False)
    assert path == cache / "cohort.csv"
    assert path.read_bytes() == COHORT
    assert len(COHORT) > 3_000_000
    assert leftovers(cache) == ["cohort.csv"]
    assert server.requests == ["/ok/cohort.csv"]


def test_cache_dir_created_with_parents_and_str_accepted(server, tmp_path):
    folder = tmp_path / "a" / "b" / "c"
    path = fetch(server.url("/ok/x.csv"), str(folder), progress=False)
    assert path == folder / "x.csv" and path.read_bytes() == COHORT


def test_default_cache_dir_from_env(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHGYM_CACHE", str(tmp_path / "envcache"))
    path = fetch(server.url("/ok/cohort.csv"), progress=False)
    assert path == tmp_path / "envcache" / "cohort.csv" and path.read_bytes() == COHORT


def test_reuse_makes_no_request(server, cache):
    first = fetch(server.url("/ok/cohort.csv"), cache, validate=check_header, progress=False)
    assert len(server.requests) == 1
    mtime = first.stat().st_mtime_ns
    second = fetch(server.url("/ok/cohort.csv"), cache, validate=check_header, progress=False)
    assert second == first and first.stat().st_mtime_ns == mtime
    third = fetch(server.url("/ok/cohort.csv"), cache, progress=False)  # no validator: presence is enough
    assert third == first
    assert len(server.requests) == 1


def test_invalid_cached_file_is_downloaded_again(server, cache):
    cache.mkdir()
    (cache / "cohort.csv").write_text("garbage,from,an,older,run\n1,2,3,4,5\n")
    path = fetch(server.url("/ok/cohort.csv"), cache, validate=check_header, progress=False)
    assert path.read_bytes() == COHORT
    assert server.requests == ["/ok/cohort.csv"]
    assert leftovers(cache) == ["cohort.csv"]


def test_empty_cached_file_is_downloaded_again_without_validator(server, cache):
    cache.mkdir()
    (cache / "cohort.csv").write_bytes(b"")
    assert fetch(server.url("/ok/cohort.csv"), cache, progress=False).read_bytes() == COHORT
    assert len(server.requests) == 1


def test_failed_redownload_keeps_old_file_untouched(server, cache):
    cache.mkdir()
    (cache / "cohort.csv").write_text("old invalid copy\n")
    with pytest.raises(DataError, match="incomplete"):
        fetch(server.url("/half/cohort.csv"), cache, validate=check_header, progress=False)
    assert leftovers(cache) == ["cohort.csv"]
    assert (cache / "cohort.csv").read_text() == "old invalid copy\n"


def test_local_redirect_is_followed(server, cache):
    path = fetch(server.url("/redirect-local/start"), cache, filename="cohort.csv", progress=False)
    assert path.read_bytes() == COHORT
    assert server.requests == ["/redirect-local/start", "/ok/cohort.csv"]


@pytest.mark.parametrize("route", ["chunked", "close"])
def test_progress_bar_without_content_length(server, cache, capsys, route):
    path = fetch(server.url(f"/{route}/cohort.csv"), cache, validate=check_header, progress=True)
    assert path.read_bytes() == COHORT
    assert leftovers(cache) == ["cohort.csv"]
    assert "cohort.csv" in capsys.readouterr().err  # the bar went to stderr


def test_progress_bar_with_content_length(server, cache, capsys):
    fetch(server.url("/ok/cohort.csv"), cache, progress=True)
    err = capsys.readouterr().err
    assert "cohort.csv" in err and capsys.readouterr().out == ""


# -------------------------------------------------------------------------------------------------- failure paths
def test_half_transfer_is_an_error_and_leaves_nothing(server, cache):
    url = server.url("/half/cohort.csv")
    with pytest.raises(DataError) as info:
        fetch(url, cache, validate=check_header, progress=True)
    message = str(info.value)
    assert url in message
    assert f"download incomplete: got {len(COHORT) // 2:,} of {len(COHORT):,} bytes" in message
    assert "\n" not in message
    assert leftovers(cache) == []


def test_connection_reset_is_an_error_and_leaves_nothing(server, cache):
    url = server.url("/reset/cohort.csv")
    with pytest.raises(DataError, match="download incomplete") as info:
        fetch(url, cache, progress=False)
    assert url in str(info.value)
    assert leftovers(cache) == []


@pytest.mark.parametrize(
    "exc, needle",
    [
        (ConnectionResetError(104, "Connection reset by peer"), "reset by the server"),
        (TimeoutError("timed out"), "timed out after 60 s"),
    ],
)
def test_error_raised_mid_read_is_an_error_and_leaves_nothing(server, cache, monkeypatch, exc, needle):
    """The socket error itself (not just a short read) surfaces mid-body: still one DataError, nothing left."""
    real_open = urllib.request.OpenerDirector.open

    class Breaking:
        def __init__(self, response) -> None:
            self.response, self.reads = response, 0
            self.status, self.headers = response.status, response.headers

        def read(self, n: int) -> bytes:
            self.reads += 1
            if self.reads == 2:
                raise exc
            return self.response.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *args) -> None:
            self.response.close()

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", lambda self, *a, **k: Breaking(real_open(self, *a, **k)))
    url = server.url("/ok/cohort.csv")
    with pytest.raises(DataError, match=f"download incomplete: got 1,048,576 of {len(COHORT):,} bytes") as info:
        fetch(url, cache, progress=True)
    assert url in str(info.value) and needle in str(info.value)
    assert leftovers(cache) == []


def test_cut_chunked_transfer_is_an_error_and_leaves_nothing(server, cache):
    url = server.url("/chunked-cut/cohort.csv")
    with pytest.raises(DataError, match="download incomplete") as info:
        fetch(url, cache, progress=True)
    assert url in str(info.value)
    assert leftovers(cache) == []


def test_404_is_an_error(server, cache):
    url = server.url("/missing/cohort.csv")
    with pytest.raises(DataError, match="HTTP error 404") as info:
        fetch(url, cache, progress=False)
    assert url in str(info.value)
    assert leftovers(cache) == []


def test_empty_body_is_an_error(server, cache):
    with pytest.raises(DataError, match="empty file"):
        fetch(server.url("/empty/cohort.csv"), cache, progress=False)
    assert leftovers(cache) == []


def test_connection_refused_is_an_error(cache):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cohort.csv"
    with pytest.raises(DataError, match="cannot connect") as info:
        fetch(url, cache, progress=False)
    assert url in str(info.value)
    assert leftovers(cache) == []


def test_timeout_is_an_error(server, cache):
    with pytest.raises(DataError, match="timed out after 0.3 s"):
        fetch(server.url("/slow/cohort.csv"), cache, progress=False, timeout=0.3)
    assert leftovers(cache) == []


def test_validation_failure_is_an_error_and_leaves_nothing(server, cache):
    url = server.url("/bad/cohort.csv")
    with pytest.raises(DataError) as info:
        fetch(url, cache, validate=check_header, progress=False)
    message = str(info.value)
    assert message.startswith(url + ": ")
    assert "failed validation" in message and "unexpected header line" in message
    assert ".part" not in message  # the temporary name is not shown to the user
    assert isinstance(info.value.__cause__, DataError)
    assert leftovers(cache) == []


def test_validator_raising_other_exceptions(server, cache):
    def picky(path: Path) -> None:
        raise ValueError("columns do not match")

    with pytest.raises(DataError, match="failed validation: columns do not match"):
        fetch(server.url("/ok/cohort.csv"), cache, validate=picky, progress=False)
    assert leftovers(cache) == []


def test_keyboard_interrupt_in_validator_cleans_up(server, cache):
    def interrupted(path: Path) -> None:
        assert path.exists() and path.name.startswith(".cohort.csv.part-")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch(server.url("/ok/cohort.csv"), cache, validate=interrupted, progress=False)
    assert leftovers(cache) == []


def test_keyboard_interrupt_mid_stream_cleans_up(server, cache, monkeypatch):
    class InterruptingBar:
        def __init__(self, *args, **kwargs) -> None:
            self.calls = 0

        def update(self, n: int) -> None:
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt

        def close(self) -> None:
            pass

    monkeypatch.setattr(download, "tqdm", InterruptingBar)
    with pytest.raises(KeyboardInterrupt):
        fetch(server.url("/ok/cohort.csv"), cache, progress=True)
    assert leftovers(cache) == []


@pytest.mark.parametrize(
    "route, needle",
    [
        ("redirect-remote", "refusing plain http:// to a remote host"),
        ("redirect-file", "refusing to download from file://"),
    ],
)
def test_unsafe_redirect_is_refused(server, cache, route, needle):
    url = server.url(f"/{route}/cohort.csv")
    with pytest.raises(DataError, match=needle) as info:
        fetch(url, cache, progress=False)
    assert str(info.value).startswith(url + ": ")
    assert server.requests == [f"/{route}/cohort.csv"]  # nothing else was asked for
    assert leftovers(cache) == []


def test_cache_folder_that_cannot_be_created(server, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot create the cache folder") as info:
        fetch(server.url("/ok/cohort.csv"), blocker / "cache", progress=False)
    assert str(blocker / "cache") in str(info.value)
    assert server.requests == []


def test_final_name_taken_by_a_folder(server, cache):
    (cache / "cohort.csv").mkdir(parents=True)
    with pytest.raises(DataError, match="not a regular file"):
        fetch(server.url("/ok/cohort.csv"), cache, progress=False)
    assert server.requests == []


# ----------------------------------------------------------------------------------------------------- URL policy
@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cohort.csv",
        "http://10.0.0.1/cohort.csv",
        "http://localhost.example.com/cohort.csv",
        "http://127.0.0.1.example.com/cohort.csv",
        "file:///etc/passwd",
        "ftp://example.com/cohort.csv",
        "https:///cohort.csv",
        "cohort.csv",
        "javascript:alert(1)",
    ],
)
def test_unsafe_urls_are_refused_without_network(url, tmp_path, no_network):
    with pytest.raises(DataError) as info:
        fetch(url, tmp_path / "cache", progress=False)
    message = str(info.value)
    assert message.startswith(url + ": ") and "\n" not in message
    assert not (tmp_path / "cache").exists()  # refused before touching the disk too


@pytest.mark.parametrize(
    "url",
    [
        DEFAULT_URL,
        "https://example.com/data/cohort.csv",
        "HTTPS://Example.com/cohort.csv",
        "http://127.0.0.1:8000/cohort.csv",
        "http://127.5.6.7/cohort.csv",
        "http://localhost/cohort.csv",
        "http://LOCALHOST:9/cohort.csv",
        "http://[::1]:8000/cohort.csv",
    ],
)
def test_acceptable_urls_pass_the_policy(url):
    download._check_url(url)


def test_https_to_http_redirect_is_refused():
    with pytest.raises(DataError, match="from https:// to http://"):
        download._check_url("http://127.0.0.1/x.csv", original="https://example.com/x.csv")


# ------------------------------------------------------------------------------------------------------ file names
@pytest.mark.parametrize(
    "url, expected",
    [
        (DEFAULT_URL, DEFAULT_FILENAME),
        (DEFAULT_URL + "/", DEFAULT_FILENAME),
        ("https://example.com/files/data.csv", "data.csv"),
        ("https://example.com/files/my%20data.csv?download=1#x", "my data.csv"),
        ("https://figshare.com/ndownloader/files/35249488", "35249488"),
        ("https://example.com/", "cohort.csv"),
        ("https://example.com", "cohort.csv"),
        ("https://example.com/files/..", "cohort.csv"),
        ("https://example.com/files/..%2F..%2Fetc%2Fpasswd", "cohort.csv"),
        ("https://example.com/files/a%5Cb.csv", "cohort.csv"),
        ("https://example.com/files/.bashrc", "cohort.csv"),
        ("https://example.com/files/x%00.csv", "cohort.csv"),
        ("https://example.com/files/%ff%fe.csv", "cohort.csv"),
        ("https://example.com/files/" + "a" * 300 + ".csv", "cohort.csv"),
    ],
)
def test_filename_from_url(url, expected):
    assert filename_from_url(url) == expected


def test_unsafe_url_segment_saved_as_cohort_csv(server, tmp_path):
    cache = tmp_path / "deep" / "cache"
    path = fetch(server.url("/ok/..%2F..%2Fescaped.csv"), cache, progress=False)
    assert path == cache / "cohort.csv" and path.read_bytes() == COHORT
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["cohort.csv"]


@pytest.mark.parametrize("bad", ["../x.csv", "a/b.csv", "..", ".", "", ".hidden.csv", "a\\b.csv"])
def test_explicit_unsafe_filename_is_refused(bad, tmp_path, no_network):
    with pytest.raises(DataError, match="not a plain file name"):
        fetch("http://127.0.0.1:9/x.csv", tmp_path / "cache", filename=bad, progress=False)
    assert not (tmp_path / "cache").exists()


def test_explicit_filename_is_used(server, cache):
    path = fetch(server.url("/ok/whatever"), cache, filename="art4hiv.csv", progress=False)
    assert path == cache / "art4hiv.csv" and path.read_bytes() == COHORT


# ---------------------------------------------------------------------------------------------------- cache folder
def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HEALTHGYM_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "healthgym"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "healthgym"
    monkeypatch.setenv("HEALTHGYM_CACHE", str(tmp_path / "hg"))
    assert default_cache_dir() == tmp_path / "hg"
    monkeypatch.setenv("HEALTHGYM_CACHE", "")  # empty counts as unset
    assert default_cache_dir() == tmp_path / "xdg" / "healthgym"


def test_cached_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HEALTHGYM_CACHE", str(tmp_path / "hg"))
    assert cached_path() == tmp_path / "hg" / DEFAULT_FILENAME
    assert cached_path(tmp_path / "c", "x.csv") == tmp_path / "c" / "x.csv"
    with pytest.raises(DataError):
        cached_path(tmp_path, "../x.csv")

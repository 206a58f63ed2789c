"""Download the published Health Gym v2.0 ART-for-HIV CSV into a local cache folder.

The dataset is not bundled: `fetch()` downloads it once (figshare download 40584980, about 45 MB) and reuses the
cached copy afterwards. Only the standard library and tqdm are used.

Guarantees:

* Only ``https://`` URLs are accepted for remote hosts; plain ``http://`` only for loopback hosts (127.0.0.0/8,
  ``localhost``, ``::1``), which is what the tests use. Redirects are held to the same rule and may not
  downgrade https to http. Anything else raises :class:`DataError` before any network access.
* The body is streamed to a temporary file in the cache folder and moved to its final name with ``os.replace``
  only once it is complete (Content-Length honoured, zero bytes refused) and the optional validator accepts it.
  No error path, KeyboardInterrupt included, leaves a file at the final name or a ``.part`` file behind.
* What is fetched is only ever written to disk: never executed, imported or unpickled.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import secrets
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from healthgym_core import __version__
from healthgym_core.errors import DataError

DEFAULT_URL = "https://figshare.com/ndownloader/files/40584980"
DEFAULT_FILENAME = "HealthGymV2_CbdrhDatathon_ART4HIV.csv"
FALLBACK_FILENAME = "cohort.csv"

CHUNK_SIZE = 1024 * 1024  # bytes read per network call
_MAX_NAME_BYTES = 200  # leaves room for the temporary-file decoration within the usual 255-byte limit
_USER_AGENT = f"healthgym-tune/{__version__} (Python urllib)"
_LOOPBACK_NAMES = {"localhost", "localhost.", "localhost.localdomain"}


# --------------------------------------------------------------------------------------------------- locations
def default_cache_dir() -> Path:
    """$HEALTHGYM_CACHE if set, else $XDG_CACHE_HOME/healthgym, else ~/.cache/healthgym (empty counts as unset)."""
    explicit = os.environ.get("HEALTHGYM_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "healthgym"
    return Path.home() / ".cache" / "healthgym"


def cached_path(cache_dir: str | Path | None = None, filename: str = DEFAULT_FILENAME) -> Path:
    """Where `fetch` puts (or finds) `filename`; the file need not exist."""
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return folder / _check_filename(filename)


# ------------------------------------------------------------------------------------------------- URL policy
def _is_loopback(host: str) -> bool:
    host = host.lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback  # "%" : IPv6 zone id
    except ValueError:
        return False


def _check_url(url: str, *, original: str | None = None) -> urllib.parse.SplitResult:
    """Raise DataError unless `url` is https://host/... or http:// to a loopback host.

    With `original` set, `url` is a redirect target of `original`: the error names both, and an https original
    may only redirect to https.
    """
    named = original if original is not None else url
    where = f" (redirected to {url})" if original is not None else ""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError as exc:
        raise DataError(named, f"malformed URL{where}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        shown = f"{scheme}://" if scheme else "a URL without a scheme"
        raise DataError(named, f"refusing to download from {shown}{where}: only https:// URLs are accepted")
    if not host:
        raise DataError(named, f"malformed URL{where}: no host")
    if scheme == "http":
        if not _is_loopback(host):
            raise DataError(
                named,
                f"refusing plain http:// to a remote host{where}: use https:// "
                "(http:// is accepted only for 127.0.0.1, localhost and ::1)",
            )
        if original is not None and urllib.parse.urlsplit(original).scheme.lower() == "https":
            raise DataError(named, f"refusing a redirect from https:// to http://{where}")
    return parts


class _CheckedRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to URLs that pass the same policy as the URL asked for."""

    def __init__(self, original: str) -> None:
        super().__init__()
        self.original = original

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201 (urllib's signature)
        location = headers.get("location") or headers.get("uri")
        if location:
            try:
                _check_url(urllib.parse.urljoin(req.full_url, location), original=self.original)
            except DataError:
                fp.close()
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


# ------------------------------------------------------------------------------------------------- file names
def _check_filename(name: str) -> str:
    """Return `name` if it is a plain file name, else raise DataError."""
    if not _is_safe_name(name):
        raise DataError(str(name), "not a plain file name (no folders, '..', or leading '.')")
    return name


def _is_safe_name(name: object) -> bool:
    if not isinstance(name, str) or not name or name in (".", ".."):
        return False
    if name.startswith(".") or ".." in name:
        return False
    if any(sep in name for sep in ("/", "\\", os.sep, os.altsep or "/")):
        return False
    if any(ord(c) < 32 or c == "\x7f" or c in ':*?"<>|' for c in name):
        return False
    if name != name.strip() or name.endswith("."):  # awkward on Windows
        return False
    return len(name.encode("utf-8", "surrogatepass")) <= _MAX_NAME_BYTES


def filename_from_url(url: str) -> str:
    """DEFAULT_FILENAME for DEFAULT_URL, else the URL's last path segment if it is a safe name, else 'cohort.csv'."""
    if url.rstrip("/") == DEFAULT_URL:
        return DEFAULT_FILENAME
    try:
        path = urllib.parse.urlsplit(url).path
        segment = urllib.parse.unquote(path.rsplit("/", 1)[-1], errors="strict")
    except (ValueError, UnicodeDecodeError):
        return FALLBACK_FILENAME
    return segment if _is_safe_name(segment) else FALLBACK_FILENAME


# ------------------------------------------------------------------------------------------------ the download
def _ensure_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(str(folder), f"cannot create the cache folder: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise DataError(str(folder), "cache folder is not a folder")


def _reusable(final: Path, validate: Callable[[Path], object] | None) -> bool:
    try:
        if not final.is_file() or final.stat().st_size == 0:
            return False
    except OSError:
        return False
    if validate is None:
        return True  # only complete downloads are ever moved to the final name
    try:
        validate(final)
    except Exception:  # noqa: BLE001  (an invalid cached copy is simply downloaded again)
        return False
    return True


def _open_temp(folder: Path, name: str) -> tuple[Path, int]:
    """Create `.<name>.part-<pid>-<random><suffix>` exclusively in `folder`; the suffix keeps e.g. '.gz' visible."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(16):
        tmp = folder / f".{name}.part-{os.getpid()}-{secrets.token_hex(6)}{Path(name).suffix}"
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise DataError(str(folder), f"cannot write to the cache folder: {exc.strerror or exc}") from None
    raise DataError(str(folder), "cannot create a temporary file in the cache folder")  # pragma: no cover


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:  # pragma: no cover  (nothing more can be done; the name is hidden and marked .part)
        pass


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover  (some file systems refuse fsync on folders)
        pass
    finally:
        os.close(fd)


def _network_problem(exc: BaseException, timeout: float) -> str:
    """One line saying what went wrong while connecting or reading."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"timed out after {timeout:g} s"
        if isinstance(reason, OSError):
            return f"cannot connect: {reason.strerror or reason}"
        return f"cannot connect: {reason}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without a response"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset by the server"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection was cut mid-transfer"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _content_length(response: http.client.HTTPResponse) -> int | None:
    if getattr(response, "chunked", False):
        return None
    value = response.headers.get("Content-Length")
    try:
        total = int(value) if value is not None else None
    except ValueError:
        return None
    return total if total is not None and total >= 0 else None


def fetch(
    url: str = DEFAULT_URL,
    cache_dir: str | Path | None = None,
    *,
    filename: str | None = None,
    validate: Callable[[Path], object] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download `url` into `cache_dir` (default `default_cache_dir()`) unless a valid copy is there; return its path.

    `validate(path)` is called on a cached copy (an exception means: download again) and on every fresh download
    before it is moved into place (an exception means: DataError, nothing kept). `timeout` is in seconds per
    network operation. All failures are DataError with one line naming the URL (or the cache folder).
    """
    url = str(url).strip()
    parts = _check_url(url)  # before anything touches the network or the disk
    name = _check_filename(filename) if filename is not None else filename_from_url(url)
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    _ensure_folder(folder)
    final = folder / name
    if _reusable(final, validate):
        return final
    if final.exists() and not final.is_file():
        raise DataError(str(final), "exists in the cache folder and is not a regular file")

    handlers: list[urllib.request.BaseHandler] = [_CheckedRedirectHandler(url)]
    if _is_loopback(parts.hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # a local server is never reached through a proxy
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})

    tmp, fd = _open_temp(folder, name)
    committed = False
    try:
        with os.fdopen(fd, "wb") as out:
            received, total = _stream(opener, request, url, out, folder, name, progress, timeout)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise DataError(str(folder), f"cannot write to the cache folder: {exc.strerror or exc}") from None
        if received == 0:
            raise DataError(url, "download failed: the server sent an empty file (0 bytes)")
        if total is not None and received != total:
            raise DataError(url, f"download incomplete: got {received:,} of {total:,} bytes")
        if validate is not None:
            try:
                validate(tmp)
            except Exception as exc:  # noqa: BLE001  (any validator failure is reported the same way)
                detail = " ".join(str(exc).replace(str(tmp), name).split()) or type(exc).__name__
                raise DataError(url, f"downloaded file failed validation: {detail}") from exc
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise DataError(str(final), f"cannot move the download into place: {exc.strerror or exc}") from None
        committed = True
        _fsync_folder(folder)
    finally:
        if not committed:
            _unlink_quietly(tmp)
    return final


def _stream(opener, request, url, out, folder, name, progress, timeout) -> tuple[int, int | None]:  # noqa: ANN001
    """Copy the response body to `out`; return (bytes received, Content-Length or None). Raises DataError."""
    received = 0
    total: int | None = None
    try:
        response = opener.open(request, timeout=timeout)
    except DataError:
        raise  # a refused redirect
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # it holds the error response and its socket
        raise DataError(url, f"download failed: {_network_problem(exc, timeout)}") from None
    with response:
        status = getattr(response, "status", 200)
        if status != 200:
            raise DataError(url, f"download failed: unexpected HTTP status {status}")
        total = _content_length(response)
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=name,
            file=sys.stderr,
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        try:
            while True:
                try:
                    chunk = response.read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    problem = _network_problem(exc, timeout)
                    of = f" of {total:,}" if total is not None else ""
                    raise DataError(url, f"download incomplete: got {received:,}{of} bytes ({problem})") from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DataError(str(folder), f"cannot write to the cache folder: {exc.strerror or exc}") from None
                received += len(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
    return received, total

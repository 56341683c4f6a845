"""Download stage core: fetch every video of a manifest into one folder.

A manifest is a CSV with columns ``id``, ``url`` and optionally ``sha256``.
A url is ``http(s)://``, ``file://`` or a local path (relative paths resolve
against the manifest's folder); a local folder of frames (``00000.jpg``, ...
as in DAVIS) counts as a video and is copied as a folder.

Every item ends as exactly one of

* a final file ``<out_dir>/<safe_name(id)><suffix>`` (or a frame folder
  ``<out_dir>/<safe_name(id)>.frames``) that passed the size cap, the checksum
  (when one is given) and a decode probe; or
* a failed :class:`FetchResult` whose ``reason`` names the item, says what went
  wrong and what to do. Nothing else is left behind: no ``.part`` file, no
  temporary file, no half-written final file.

Network errors are split into transient ones (timeouts, connection resets,
HTTP 5xx, 408, 425, 429), retried with exponential backoff and resumed from the
partial file with a ``Range`` request, and permanent ones (other 4xx, an
unsupported scheme, a checksum mismatch, a file over the size cap, something
that is not a video), which fail at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import httpx
import pandas as pd

from .atomic import atomic_dir, atomic_path
from .formats import read_table, safe_name
from .redact import redact_text, redact_url
from .video import DEFAULT_MAX_FRAME_PIXELS, VideoError, frame_files, probe

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ogv",
    ".flv",
    ".3gp",
    ".wmv",
    ".ts",
)  # kept from the url; anything else is saved as .mp4 (FFmpeg sniffs the content, not the name)
DEFAULT_SUFFIX = ".mp4"
FRAME_FOLDER_SUFFIX = ".frames"  # keeps a folder for id "a.mp4" apart from the file of id "a"
PART_SUFFIX = ".part"
RETRY_AFTER_CAP_S = 60.0  # never wait longer than this on a server's Retry-After
USER_AGENT = "motionmasks-download/0.1 (research video corpus)"
TRANSIENT_STATUS = frozenset({408, 425, 429})  # plus every 5xx
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})

logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines print every request url, secrets included


class ManifestError(ValueError):
    """The manifest as a whole is unusable; the message names the rows to fix."""


@dataclass
class FetchResult:
    """What happened to one manifest item.

    Attributes
    ----------
    id, url : str
        The manifest row.
    status : str
        ``"ok"`` or ``"failed"``.
    path : str or None
        The final file or frame folder (``None`` when failed).
    reason : str
        Empty when ok; otherwise names the item, what went wrong and what to do.
    attempts : int
        How many times the source was tried (0 when it never could be).
    bytes : int
        Size of the fetched file or frame folder; for a failed item, how many
        bytes had arrived when it gave up.
    seconds : float
        Wall time spent on the item, backoff waits included.
    frames, fps, width, height, duration_s
        From the decode probe (container frame count, not an exact decode);
        ``None`` when failed.
    """

    id: str
    url: str
    status: str
    path: str | None = None
    reason: str = ""
    attempts: int = 0
    bytes: int = 0
    seconds: float = 0.0
    frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None

    def row(self) -> dict:
        """The result as a flat dict (one row of the download table)."""
        return asdict(self)


class _Failure(Exception):
    """One failed attempt: ``what`` went wrong, ``todo`` says how to fix it."""

    def __init__(self, what: str, todo: str, *, transient: bool, retry_after_s: float | None = None):
        super().__init__(what)
        self.what = what
        self.todo = todo
        self.transient = transient
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class _Policy:
    """How hard to try: the transfer limits and retry schedule of one fetch."""

    timeout_s: float
    retries: int
    backoff_s: float
    max_bytes: int
    min_bytes_per_s: float
    max_redirects: int
    max_frame_pixels: int
    sleep: Callable[[float], None]


@dataclass
class _Source:
    """What the server said about the resource, kept across attempts to resume safely."""

    validator: str = ""  # strong ETag or Last-Modified, sent as If-Range
    content_type: str = ""
    total: int | None = None  # full size in bytes, when the server said


# --------------------------------------------------------------------------- names and manifest


def _is_local(url: str) -> bool:
    try:
        scheme = urlparse(url).scheme
    except ValueError:  # a malformed url: not a path either; fetch_one fails that item by name
        return False
    return scheme == "" or len(scheme) == 1  # one letter: a Windows drive, not a scheme


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a video manifest.

    Parameters
    ----------
    path : path-like
        CSV file with columns ``id``, ``url`` and optionally ``sha256``
        (lower- or upper-case hex; empty when unknown). Other columns are kept.

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``url``, ``sha256`` (str, ``''`` when absent, lower
        case) first, then any other columns. Local paths in ``url`` are made
        absolute, relative ones against the manifest's folder, for fetching;
        ``url_as_written`` keeps the manifest's own string, for the records
        (an absolute path of this checkout would make them differ between clones).

    Raises
    ------
    ManifestError
        Unreadable file, missing columns, no rows, empty ``id``/``url``,
        duplicate ids (or ids whose file names collide), malformed ``sha256``;
        the message names the CSV lines.
    """
    path = Path(path)
    try:
        df = read_table(path)
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found; check download.manifest in params.yaml") from None
    except (ValueError, pd.errors.ParserError) as error:
        raise ManifestError(f"{path}: not a readable CSV manifest ({error})") from None
    missing = [c for c in ("id", "url") if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must hold id,url and optionally sha256 "
            f"(found: {', '.join(map(str, df.columns)) or 'nothing'})"
        )
    if df.empty:
        raise ManifestError(f"{path}: manifest has no rows; add one line per video (id,url[,sha256])")
    df = df.astype(str)
    if "sha256" not in df.columns:
        df["sha256"] = ""
    for column in ("id", "url", "sha256"):
        df[column] = df[column].str.strip()
    df["sha256"] = df["sha256"].str.lower()
    line = df.index.to_series() + 2  # CSV line numbers: the header is line 1

    problems = []
    for column in ("id", "url"):
        empty = line[df[column] == ""]
        if len(empty):
            problems.append(f"empty {column} on line(s) {_lines(empty)}")
    dup = df["id"].duplicated(keep=False) & (df["id"] != "")
    for video_id, group in line[dup].groupby(df["id"][dup], sort=False):
        problems.append(f"id {video_id!r} repeated on lines {_lines(group)}")
    names = df["id"].map(lambda v: safe_name(v) if v else "")
    clash = names.duplicated(keep=False) & ~dup & (names != "")
    for name, group in line[clash].groupby(names[clash], sort=False):
        problems.append(f"ids on lines {_lines(group)} map to the same file name {name!r}")
    bad_sha = line[(df["sha256"] != "") & ~df["sha256"].str.fullmatch(_SHA256.pattern)]
    if len(bad_sha):
        problems.append(f"sha256 is not 64 hex digits on line(s) {_lines(bad_sha)}")
    if problems:
        raise ManifestError(f"{path}: " + "; ".join(problems) + "; fix these rows and re-run")

    base = path.resolve().parent
    df["url_as_written"] = df["url"]
    df["url"] = [str((base / Path(u).expanduser()).resolve()) if _is_local(u) else u for u in df["url"]]
    first = ["id", "url", "sha256", "url_as_written"]
    return df[[*first, *[c for c in df.columns if c not in first]]].reset_index(drop=True)


def _lines(lines: pd.Series) -> str:
    return ", ".join(str(int(n)) for n in lines)


# --------------------------------------------------------------------------- fetching


def fetch_one(
    video_id: str,
    url: str,
    out_dir: str | os.PathLike,
    *,
    sha256: str = "",
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    max_bytes: int = 2_000_000_000,
    min_bytes_per_s: float = 1024.0,
    max_redirects: int = 5,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    sleep: Callable[[float], None] = time.sleep,
    client: httpx.Client | None = None,
) -> FetchResult:
    """Fetch one video into ``out_dir``; never raises for a problem with the item.

    Parameters
    ----------
    video_id : str
        Manifest id; the output name is ``safe_name(video_id)`` plus the url's
        video suffix (``.mp4`` when it has none), or ``.frames`` for a frame folder.
    url : str
        ``http(s)://``, ``file://`` or a local path (relative to the working
        directory here; :func:`read_manifest` has already made them absolute).
    out_dir : path-like
        Output folder (created when missing).
    sha256 : str
        Expected SHA-256 hex digest of the file; ``''`` skips the check. Not
        defined for frame folders (they fail when one is given).
    timeout_s : float
        Seconds to wait for a connection or for the next bytes of data (a stall
        timeout, not a limit on the whole download, so large files still work).
    retries : int
        Extra attempts after a transient error; permanent errors are not retried.
    backoff_s : float
        Wait before the first retry, in seconds; doubles for every further one.
        A larger ``Retry-After`` from the server (up to 60 s) wins.
    max_bytes : int
        Size cap; checked against ``Content-Length`` before downloading and
        against the bytes counted while streaming.
    min_bytes_per_s : float
        Slowest acceptable average rate once an attempt has run ``timeout_s``
        seconds: a server that trickles bytes (each within the stall timeout)
        would otherwise hold its worker forever. A too-slow attempt is a
        transient failure (retried, resumed).
    max_redirects : int
        Most HTTP redirects followed for one attempt. The size cap holds
        across them (a redirect's own body is never read), and an https url
        is never redirected to plain http.
    max_frame_pixels : int
        Largest frame (width x height) accepted; checked from the header
        before a frame is decoded.
    sleep : callable
        Waits between attempts (injected by tests).
    client : httpx.Client, optional
        Shared client (connection reuse in :func:`fetch_batch`).

    Returns
    -------
    FetchResult
        ``status == "ok"`` with the probed video facts, or ``"failed"`` with a
        reason. Its ``url`` and ``reason`` are redacted (:func:`redact_url`):
        credentials in the url are used for the fetch and never stored.
    """
    started = time.monotonic()
    url = str(url)
    result = FetchResult(id=str(video_id), url=redact_url(url), status="failed")
    try:
        sha256 = str(sha256 or "").strip().lower()
        policy = _Policy(
            timeout_s, retries, backoff_s, max_bytes, min_bytes_per_s, max_redirects, max_frame_pixels, sleep
        )
        _fetch(result, url, Path(out_dir), sha256, policy, client)
    except _Failure as failure:
        result.reason = _reason(result, failure)
    except OSError as error:  # our side: disk full, no permission on out_dir
        result.reason = (
            f"{video_id}: could not read or write a file while fetching {result.url} ({error}); "
            "check free disk space and permissions of the output folder"
        )
    except Exception as error:  # an item must never stop the batch
        logger.error("%s: unexpected %s: %s", video_id, type(error).__name__, redact_text(str(error), url))
        result.reason = (
            f"{video_id}: unexpected {type(error).__name__} while fetching {result.url}: {error}; "
            "this is a bug in the download stage, please report it with this message"
        )
    result.reason = redact_text(result.reason, url)
    if result.status != "ok":
        result.path = result.frames = result.fps = result.width = result.height = result.duration_s = None
    result.seconds = round(time.monotonic() - started, 3)
    return result


def fetch_batch(items: list[dict], out_dir: str | os.PathLike, *, parallel: int = 1, **kwargs) -> list[dict]:
    """Fetch every item (``{"id", "url", "sha256"?}``) and return one result row each.

    Rows come back in the order of ``items``. A failing item (including a
    malformed one, or a repeated id) gives a failed row and never stops the
    others. ``parallel`` downloads run at once in threads (the work is I/O);
    ``kwargs`` go to :func:`fetch_one`.
    """
    out_dir = Path(out_dir)
    seen: dict[str, str] = {}
    jobs: list[tuple[int, dict]] = []
    rows: list[dict | None] = [None] * len(items)
    for i, item in enumerate(items):
        video_id, url = str(item.get("id", "") or ""), str(item.get("url", "") or "")
        try:
            name = safe_name(video_id)
        except ValueError:
            name = ""
        if not name or not url:
            rows[i] = FetchResult(
                video_id,
                redact_url(url),
                "failed",
                reason=(f"item {i} ({video_id or 'no id'}): needs a non-empty id and url; fix the manifest row"),
            ).row()
        elif name in seen:
            rows[i] = FetchResult(
                video_id,
                redact_url(url),
                "failed",
                reason=(
                    f"{video_id}: same output name {name!r} as id {seen[name]!r} earlier in the batch; "
                    "give every video its own id"
                ),
            ).row()
        else:
            seen[name] = video_id
            jobs.append((i, item))

    with _new_client() as client, ThreadPoolExecutor(max(1, parallel), thread_name_prefix="download") as pool:

        def run(job: tuple[int, dict]) -> tuple[int, dict]:
            i, item = job
            result = fetch_one(
                str(item["id"]),
                str(item["url"]),
                out_dir,
                sha256=str(item.get("sha256", "") or ""),
                client=client,
                **kwargs,
            )
            return i, result.row()

        for i, row in pool.map(run, jobs):
            rows[i] = row
    return rows  # type: ignore[return-value]


def _new_client() -> httpx.Client:
    # identity: Content-Length and Range must count the bytes of the file itself, not of a gzip of it.
    # Redirects are followed by _open, which never reads a redirect's body (httpx would, uncapped).
    return httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})


def _reason(result: FetchResult, failure: _Failure) -> str:
    tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
    return f"{result.id}: {failure.what}{tries} ({result.url}); {failure.todo}"


def _fetch(
    result: FetchResult,
    url: str,
    out_dir: Path,
    sha256: str,
    policy: _Policy,
    client: httpx.Client | None,
) -> None:
    """Fill ``result`` in place; raise :class:`_Failure` when the item fails."""
    try:
        name = safe_name(result.id)
    except ValueError:
        raise _Failure("empty or non-text id", "give the row an id", transient=False) from None
    if sha256 and not _SHA256.match(sha256):
        raise _Failure(f"sha256 {sha256!r} is not 64 hex digits", "fix or clear the sha256 column", transient=False)
    if not url.strip():
        raise _Failure("empty url", "give the row a url or drop it", transient=False)
    try:
        parsed = urlparse(url)
    except ValueError as error:
        raise _Failure(f"malformed url ({error})", "fix the url", transient=False) from None
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        _fetch_http(result, url, out_dir, name, sha256, policy, client)
        return
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise _Failure(
                f"file url names host {parsed.hostname or parsed.netloc.rsplit('@', 1)[-1]!r}",
                "write file:///absolute/path",
                transient=False,
            )
        source = Path(url2pathname(unquote(parsed.path)))
    elif _is_local(url):
        source = Path(url).expanduser()
    else:
        raise _Failure(
            f"unsupported url scheme {scheme!r}",
            "use an http(s):// or file:// url or a local path (fetch other sources by hand)",
            transient=False,
        )
    _fetch_local(result, source, out_dir, name, sha256, policy)


def _suffix(path: str) -> str:
    suffix = Path(unquote(path)).suffix.lower()
    return suffix if suffix in VIDEO_SUFFIXES else DEFAULT_SUFFIX


def _fetch_local(result: FetchResult, source: Path, out_dir: Path, name: str, sha256: str, policy: _Policy) -> None:
    result.attempts = 1  # local copies are not retried: a missing or bad file stays so
    if source.is_dir():
        if sha256:
            raise _Failure(
                "a sha256 was given for a frame folder", "checksums apply to single files; clear it", transient=False
            )
        try:
            files = frame_files(source)
        except VideoError as error:
            raise _Failure(str(error), "fix the frame folder", transient=False) from None
        size = sum(f.stat().st_size for f in files)
        result.bytes = size
        _check_size(size, policy.max_bytes)
        _probe_into(result, source, "", policy.max_frame_pixels)  # before copying: headers, sizes, first frame
        dest = out_dir / (name + FRAME_FOLDER_SUFFIX)
        with atomic_dir(dest) as tmp:
            for f in files:
                shutil.copyfile(f, tmp / f.name)
        result.path, result.status = str(dest), "ok"
        return
    if not source.is_file():
        raise _Failure(f"no such file or folder {source}", "fix the path in the manifest", transient=False)
    size = source.stat().st_size
    result.bytes = size
    _check_size(size, policy.max_bytes)
    dest = out_dir / (name + _suffix(source.name))
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
        _verify(result, tmp, sha256, "", policy.max_frame_pixels)
    result.path, result.status = str(dest), "ok"


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise _Failure(
            f"size {size} bytes is over the size cap of {max_bytes} bytes",
            "raise download.max_bytes or drop the video",
            transient=False,
        )


def _verify(result: FetchResult, path: Path, sha256: str, content_type: str, max_pixels: int) -> None:
    if sha256:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != sha256:
            raise _Failure(
                f"checksum mismatch: got sha256 {digest}, manifest says {sha256}",
                "the file changed or the manifest is wrong: fix the sha256 or the url",
                transient=False,
            )
    _probe_into(result, path, content_type, max_pixels)


def _probe_into(result: FetchResult, path: Path, content_type: str, max_pixels: int) -> None:
    try:
        info = probe(path, exact=False, max_pixels=max_pixels)  # first frame only: proves it decodes
    except (VideoError, OSError) as error:
        sent = f" (the server sent {content_type})" if content_type else ""
        detail = str(error).removeprefix(f"{path}: ")  # the temporary name means nothing to the reader
        todo = (
            "raise download.max_frame_pixels or shrink the video"
            if "pixels per frame" in detail
            else "the url does not point at a video: fix it or drop the row"
        )
        raise _Failure(f"{detail}{sent}", todo, transient=False) from None
    result.frames, result.fps = info.frames, info.fps
    result.width, result.height, result.duration_s = info.width, info.height, info.duration_s


def _fetch_http(
    result: FetchResult,
    url: str,
    out_dir: Path,
    name: str,
    sha256: str,
    policy: _Policy,
    client: httpx.Client | None,
) -> None:
    dest = out_dir / (name + _suffix(urlparse(url).path))
    part = dest.with_name(dest.name + PART_SUFFIX)
    out_dir.mkdir(parents=True, exist_ok=True)
    part.unlink(missing_ok=True)  # left by a killed run: its source may have changed since, so start afresh
    own = client is None
    client = client or _new_client()
    source = _Source()
    try:
        while True:
            result.attempts += 1
            try:
                _http_attempt(client, url, part, source, policy)
                break
            except _Failure as failure:
                result.bytes = part.stat().st_size if part.exists() else 0
                if not failure.transient or result.attempts > policy.retries:
                    raise
                delay = policy.backoff_s * 2 ** (result.attempts - 1)
                if failure.retry_after_s is not None:
                    delay = max(delay, min(failure.retry_after_s, RETRY_AFTER_CAP_S))
                logger.warning(
                    "%s: %s; retry %d/%d in %.1f s",
                    result.id,
                    redact_text(failure.what, url),
                    result.attempts,
                    policy.retries,
                    delay,
                )
                policy.sleep(delay)
        result.bytes = part.stat().st_size
        with atomic_path(dest) as tmp:
            os.replace(part, tmp)
            _verify(result, tmp, sha256, source.content_type, policy.max_frame_pixels)
        result.path, result.status = str(dest), "ok"
    finally:
        part.unlink(missing_ok=True)
        if own:
            client.close()


def _http_attempt(client: httpx.Client, url: str, part: Path, source: _Source, policy: _Policy) -> None:
    """One GET into ``part``, resuming from its current size; raise :class:`_Failure` on error."""
    have = part.stat().st_size if part.exists() else 0
    headers = {}
    if have:
        headers["Range"] = f"bytes={have}-"
        if source.validator:
            headers["If-Range"] = source.validator  # changed since? the server then sends it all (200)
    try:
        with _open(client, url, headers, policy) as response:
            status = response.status_code
            if status == 416 and have:
                part.unlink(missing_ok=True)  # our partial file does not fit the resource any more
                raise _Failure("server refused to resume (HTTP 416)", "try later", transient=True)
            if status not in (200, 206):
                raise _status_failure(response)
            length = _int_or_none(response.headers.get("Content-Length"))
            if status == 206:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != have or (source.total is not None and total is not None and total != source.total):
                    part.unlink(missing_ok=True)  # not the continuation of what we hold: start again
                    raise _Failure(
                        f"server resumed at byte {start} of {total}, not {have} of {source.total}",
                        "try later",
                        transient=True,
                    )
            else:
                have, total = 0, length  # a full answer: start the file again
            etag = response.headers.get("ETag", "")
            source.validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified", "")
            source.content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if status == 200 or total is not None:
                source.total = total
            expected = total if total is not None else (have + length if length is not None else None)
            if expected is not None:
                _check_size(expected, policy.max_bytes)
            started, received = time.monotonic(), 0
            with open(part, "ab" if have else "wb") as f:
                for chunk in response.iter_bytes():  # unchunked: every byte received is on disk for a resume
                    have += len(chunk)
                    _check_size(have, policy.max_bytes)  # Content-Length may be absent or lie
                    f.write(chunk)
                    received += len(chunk)
                    elapsed = time.monotonic() - started
                    if elapsed > policy.timeout_s and received < policy.min_bytes_per_s * elapsed:
                        f.flush()
                        raise _Failure(
                            f"too slow ({received / elapsed:.0f} B/s over {elapsed:.0f} s)",
                            "the server trickles data: lower download.min_bytes_per_s or try later",
                            transient=True,
                        )
            if expected is not None and have < expected:
                raise _Failure(f"connection closed after {have} of {expected} bytes", "try later", transient=True)
    except httpx.TimeoutException:
        raise _Failure(
            f"timed out (no data for {policy.timeout_s:g} s)",
            "the server is slow or unreachable: raise download.timeout_s or retries, or try later",
            transient=True,
        ) from None
    except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as error:
        raise _Failure(
            f"connection failed ({type(error).__name__}: {error})",
            "check the network or the host, or try later",
            transient=True,
        ) from None
    except httpx.HTTPError as error:  # too many redirects, a redirect to another scheme, a malformed url
        raise _Failure(f"{type(error).__name__}: {error}", "fix the url", transient=False) from None


@contextlib.contextmanager
def _open(client: httpx.Client, url: str, headers: dict[str, str], policy: _Policy) -> Iterator[httpx.Response]:
    """GET ``url`` as a stream, following at most ``policy.max_redirects`` redirects by hand.

    A redirect's body is never read (httpx's own following reads it whole,
    with no cap), only http(s) targets are followed, and https never goes
    down to http.
    """
    for _ in range(policy.max_redirects + 1):
        request = client.build_request("GET", url, headers=headers, timeout=policy.timeout_s)
        try:
            response = client.send(request, stream=True)
        except httpx.RemoteProtocolError as error:
            if "location header" not in str(error).lower():
                raise
            # httpx checks a redirect's Location even when it does not follow it
            raise _Failure(f"redirected to a malformed url ({error})", "use the final url", transient=False) from None
        if response.status_code not in REDIRECT_STATUS or "Location" not in response.headers:
            try:
                yield response
            finally:
                response.close()
            return
        response.close()
        try:
            target = str(response.url.join(response.headers["Location"]))
            httpx.URL(target)  # raises for a malformed one
        except (httpx.InvalidURL, ValueError):
            raise _Failure(
                f"redirected to a malformed url {redact_text(response.headers['Location'])!r}",
                "use the final url",
                transient=False,
            ) from None
        old, new = urlparse(url).scheme.lower(), urlparse(target).scheme.lower()
        if new not in ("http", "https") or (old == "https" and new == "http"):
            raise _Failure(
                f"redirected from {old} to {redact_url(target)}",
                "only http(s) redirects that keep https are followed: use the final url",
                transient=False,
            )
        url = target
    raise _Failure(
        f"more than {policy.max_redirects} redirects",
        "use the final url, or raise download.max_redirects",
        transient=False,
    )


def _status_failure(response: httpx.Response) -> _Failure:
    status = response.status_code
    what = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status >= 500 or status in TRANSIENT_STATUS:
        retry_after = response.headers.get("Retry-After", "")
        seconds = float(retry_after) if retry_after.strip().isdigit() else None  # HTTP-dates are ignored
        return _Failure(
            what,
            "the server is failing or throttling: try later or lower download.parallel",
            transient=True,
            retry_after_s=seconds,
        )
    if status in (401, 403):
        todo = "the video is private or needs a login: fix the url or drop the row"
    elif status in (404, 410):
        todo = "the url is wrong or the video was removed: fix the url or drop the row"
    else:
        todo = "the server refuses this request: fix the url or drop the row"
    return _Failure(what, todo, transient=False)


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None when ``*``)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value)
    if not match:
        raise _Failure(f"partial answer with a malformed Content-Range {value!r}", "try later", transient=True)
    return int(match[1]), None if match[3] == "*" else int(match[3])


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None

"""Credentials never leave the fetch: urls as they may be shown or stored.

A manifest url may carry a user and password (``https://bob:pw@host/v.mp4``)
or a token in its query (``?token=...``, a signed url's ``X-Amz-Signature``).
The fetch uses the real url; every table, failures report, log line and
Prefect artifact gets the redacted form.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

REDACTED = "***"
# Query keys whose values are credentials (API keys, signed-URL signatures, session tokens).
_SECRET_KEY = re.compile(r"token|key|sig|secret|pass|pwd|auth|cred|session|jwt", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` as it may be shown or stored: user, password and secret query values replaced by ``***``.

    The fetch itself uses the real url; every table, report, log line and
    Prefect artifact gets this form.

    Examples
    --------
    >>> redact_url("https://bob:hunter2@example.org/v.mp4?token=abc&size=720")
    'https://***@example.org/v.mp4?token=***&size=720'
    """
    try:
        parsed = urlparse(url)
    except ValueError:
        return _URL_IN_TEXT.sub(REDACTED, url)
    if not parsed.scheme or len(parsed.scheme) == 1:
        return url  # a local path: nothing secret in it
    netloc = parsed.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parsed.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEY.search(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if _SECRET_KEY.search(k) else v) for k, v in pairs], safe="*")
    return urlunparse(parsed._replace(netloc=netloc, query=query))


def _secrets_of(url: str) -> list[str]:
    """The credential strings inside ``url``, raw and percent-decoded."""
    try:
        parsed = urlparse(url)
    except ValueError:
        return []
    found = []
    if parsed.username:
        found.append(parsed.username)
    if parsed.password:
        found.append(parsed.password)
    found += [v for k, v in parse_qsl(parsed.query, keep_blank_values=True) if _SECRET_KEY.search(k)]
    raw = [part for part in parsed.netloc.rsplit("@", 1)[0].split(":")] if "@" in parsed.netloc else []
    return sorted({s for s in found + raw if len(s) >= 3}, key=len, reverse=True)


def redact_text(text: str, url: str = "") -> str:
    """``text`` with every url in it redacted, and the credentials of ``url`` wherever they appear."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in _secrets_of(url):
        text = text.replace(secret, REDACTED)
    return text

"""Credentials never leave the fetch: urls as they may be shown or stored.

A manifest url may carry a user and password (``https://bob:pw@host/v.mp4``)
or a token in its query (``?token=...``, a signed url's ``X-Amz-Signature``).
The fetch uses the real url; every table, failures report, log line and
Prefect artifact gets the redacted form.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlparse, urlunparse

REDACTED = "***"
# Keys whose values are credentials (API keys, signed-URL signatures, session tokens), in a
# url's query, its fragment (``#access_token=``, OAuth) or its path parameters (``;token=``).
_SECRET_KEY = re.compile(r"token|key|sig|secret|pass|pwd|auth|cred|session|jwt", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_TRAILING = ").,;:!?]"  # sentence punctuation after a url in a message, not part of it
_USERINFO_IN_TEXT = re.compile(r"[^\s/@:'\"()<>]+:[^\s/@'\"()<>]*@(?=[A-Za-z0-9\[])")
_MIN_SCRUBBED = 4  # shorter secrets are only removed where they stand in a url (not from every word)


def _redact_pairs(text: str, separator: str = "&") -> str:
    pairs = [part.split("=", 1) for part in text.split(separator)]
    if not any(len(pair) == 2 and _SECRET_KEY.search(pair[0]) for pair in pairs):
        return text
    return separator.join(
        f"{pair[0]}={REDACTED}" if len(pair) == 2 and _SECRET_KEY.search(pair[0]) else "=".join(pair) for pair in pairs
    )


def redact_url(url: str) -> str:
    """``url`` as it may be shown or stored: user, password and secret values replaced by ``***``.

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
        return _URL_IN_TEXT.sub(REDACTED, _USERINFO_IN_TEXT.sub(f"{REDACTED}@", url))
    if not parsed.scheme or len(parsed.scheme) == 1:
        return url  # a local path: nothing secret in it
    netloc = parsed.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    return urlunparse(
        parsed._replace(
            netloc=netloc,
            query=_redact_pairs(parsed.query),
            fragment=_redact_pairs(parsed.fragment),
            params=_redact_pairs(parsed.params, ";"),
        )
    )


def _secrets_of(url: str) -> list[str]:
    """The credential strings inside ``url`` long enough to be scrubbed from any text."""
    try:
        parsed = urlparse(url)
    except ValueError:
        return []
    found = [parsed.username or "", parsed.password or ""]
    for part, separator in ((parsed.query, "&"), (parsed.fragment, "&"), (parsed.params, ";")):
        found += [
            pair[1]
            for pair in (p.split("=", 1) for p in part.split(separator))
            if len(pair) == 2 and _SECRET_KEY.search(pair[0])
        ]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if len(s) >= _MIN_SCRUBBED}, key=len, reverse=True)


def _redact_match(match: re.Match) -> str:
    url = match.group(0)
    kept = url.rstrip(_TRAILING)
    return redact_url(kept) + url[len(kept) :]


def redact_text(text: str, url: str = "") -> str:
    """``text`` with every url in it redacted, and the credentials of ``url`` wherever they appear."""
    text = _URL_IN_TEXT.sub(_redact_match, text)
    text = _USERINFO_IN_TEXT.sub(f"{REDACTED}@", text)
    for secret in _secrets_of(url):
        text = text.replace(secret, REDACTED)
    return text

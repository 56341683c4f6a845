"""File names made from video ids: they can never leave the output folder."""

from __future__ import annotations

import hashlib
import re

_SAFE_CHAR = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 120  # well under the 255-byte file-name limit, with room for suffixes


def safe_name(video_id: str) -> str:
    """File-system name for ``video_id`` that cannot leave the output folder.

    Keeps ``[A-Za-z0-9._-]``, replaces every other character by ``_`` and a
    leading dot by ``_`` (so no ``..`` and no hidden files). When anything was
    changed (or the id was too long) a dash and the first 8 hex digits of the
    id's SHA-256 are appended, so two different ids never share a name.

    Examples
    --------
    >>> safe_name("bear-01")
    'bear-01'
    >>> safe_name("../../etc/passwd")
    '_._.._etc_passwd-3754d6cb'
    """
    if not isinstance(video_id, str) or not video_id:
        raise ValueError(f"video id must be a non-empty string, got {video_id!r}")
    name = _SAFE_CHAR.sub("_", video_id)
    if name.startswith("."):
        name = "_" + name[1:]
    if name == video_id and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(video_id.encode("utf-8")).hexdigest()[:8]
    return f"{name[:_MAX_NAME]}-{digest}"

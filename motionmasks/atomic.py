"""Atomic writing: a file or folder appears whole or not at all, and only folders this project wrote are replaced.

Kept apart from :mod:`motionmasks.formats` on purpose: how a file is put in
place shapes no output, so no DVC stage depends on this module and a change
here re-runs nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

# Temporaries of the atomic writers: ``.<name>.<pid>.<random>.tmp[<suffix>]`` beside the
# target. The pid lets a later run tell a leftover of a killed process (removed by
# sweep_temporaries) from the live work of a concurrent one (left alone).
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<rand>[A-Za-z0-9_]{8})\.tmp(\.[A-Za-z0-9]+)?$")

OWNER_MARKER = ".motionmasks-output"  # inside every folder this project writes; only such folders are replaced
_OWNER_TEXT = "written by motionmasks: this folder is replaced when its stage or command runs again\n"
_umask_lock = threading.Lock()


class NotOurFolderError(FileExistsError):
    """A folder is in the way that motionmasks did not write; it is never deleted."""


def current_umask() -> int:
    with _umask_lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _temp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}."


def is_owned_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder that motionmasks wrote (it holds the owner marker)."""
    return (Path(path) / OWNER_MARKER).is_file()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    The temporary name keeps the suffix so libraries that choose a format by
    extension (pandas, numpy, OpenCV) still work. On error the temporary file
    is removed and the target is left untouched. The file gets the ordinary
    permissions of a new file (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.stem), suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; swap it into place on success.

    The new folder holds :data:`OWNER_MARKER`. An existing ``path`` is replaced
    only when it holds that marker too (motionmasks wrote it); any other
    folder or file in the way raises :class:`NotOurFolderError` before any
    work starts, and nothing is deleted. The folder gets the ordinary
    permissions of a new folder (0777 less the umask), not mkdtemp's 0700.
    """
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
    try:
        (tmp / OWNER_MARKER).write_text(_OWNER_TEXT)
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path, attempts: int = 100) -> None:
    """Put the finished folder ``tmp`` at ``path``, moving a folder of ours there out of the way.

    A folder cannot be replaced in one atomic step, so another process writing
    the same ``path`` at the same moment (two commands given one ``--out``)
    can slip its folder in between: then try again. The last writer wins, and
    each writer's folder is whole.
    """
    for _ in range(attempts):
        check_replaceable(path)  # it may have appeared while we worked
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
            try:
                os.replace(path, old)  # onto our empty temporary: atomic, so never half gone
            except FileNotFoundError:  # the other writer moved it first
                old.rmdir()
                continue
            if not is_owned_folder(old):  # swapped for someone else's since the check: put it back
                os.replace(old, path)
                check_replaceable(path)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, path)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # the other writer's folder arrived first: move it aside on the next try
    raise OSError(f"{path}: another process kept replacing this folder; {attempts} attempts to write it failed")


def check_replaceable(path: Path) -> None:
    """Raise :class:`NotOurFolderError` unless ``path`` is absent or a folder motionmasks wrote."""
    path = Path(path)
    for _ in range(100):
        try:
            before = path.lstat()  # one look at what is there: a concurrent writer may move it any moment
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(before.st_mode):
            raise NotOurFolderError(
                f"{path} exists and is not a folder motionmasks wrote; it is left as it is: "
                "choose another output folder or move it away"
            )
        if is_owned_folder(path):
            return
        try:
            if path.lstat().st_ino != before.st_ino:
                continue  # another writer of ours swapped its folder in meanwhile: look again
        except FileNotFoundError:
            return
        raise NotOurFolderError(
            f"{path} exists and was not written by motionmasks (no {OWNER_MARKER} in it); "
            "it is left as it is: choose another output folder or move it away"
        )
    raise OSError(f"{path}: another process kept replacing this folder")


def sweep_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the atomic writers' temporaries in ``folder`` left by processes that no longer run.

    Only names of this module's pattern whose process is gone are removed, so
    the live temporaries of a concurrent run and everything the user put there
    stay. Returns what was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if not match or _process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True

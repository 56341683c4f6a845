"""Processes of a run die with the run.

Killing `motionmasks run` (or `dvc repro`) must not leave a stage process
writing its outputs or its pool workers behind: a new run would take the
freed lock while an orphan still writes.

- A stage process and its pool workers ask Linux to kill them when their
  parent dies (``prctl(PR_SET_PDEATHSIG)``): the chain dvc -> stage -> worker
  goes down together. A stage asks before its slow imports, so a run killed
  while the stage starts leaves no orphan either.
- The project's run server (``flows.prefect_api``) writes nothing of the
  run's: it outlives a stage on purpose (the next stage reports to it) and
  stops once idle. The Prefect server process under it gets a small reaper
  that kills it once its owner is gone, even by SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1
_REAPER = """
import os, signal, sys, time
owner, child = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
while alive(child):
    if not alive(owner):
        os.kill(child, signal.SIGTERM)
        time.sleep(3)
        if alive(child):
            os.kill(child, signal.SIGKILL)
        break
    time.sleep(1)
"""


def die_with_parent() -> None:
    """Be killed (SIGKILL) when the parent process dies; exit now if it is already gone. Linux only."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent or parent == 1:  # the parent died before the request took effect
        os._exit(1)


def reap_when_gone(owner_pid: int, child_pid: int) -> None:
    """Start a detached reaper that stops ``child_pid`` once ``owner_pid`` has died (and exits with the child)."""
    subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(owner_pid), str(child_pid)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

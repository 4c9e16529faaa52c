"""What a liveml process does to itself at start (the control plane and each replica alike)."""
from __future__ import annotations

import ctypes


def undumpable() -> None:
    """Linux: other processes of the same user (model processes, when the kernel has no
    Landlock or they run as this user) cannot read this one's /proc files (environ, memory:
    credentials, a deployment's env); only a holder of CAP_SYS_PTRACE may."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass

"""A private liveml home: folders 0700 and files 0600 whatever the process umask.

The umask is never changed (Jupyter hosts the control plane): every file the control plane
creates in the home goes through these helpers, which pass the mode to ``open`` and then set
it exactly (a umask may only take bits away).
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import IO, Any

from ..core.errors import HomeNotPrivate

DIR_MODE = 0o700
FILE_MODE = 0o600
log = logging.getLogger("liveml")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents inside it) as 0700; tighten it when it exists."""
    path = Path(path)
    if not path.is_dir():
        if not path.parent.exists():
            private_dir(path.parent)
        path.mkdir(mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: str | Path) -> Path:
    """Create ``path`` empty when missing, and make it 0600 (e.g. before SQLite opens it)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    os.chmod(path, FILE_MODE)
    return Path(path)


def open_private(path: Path, mode: str = "ab") -> IO[Any]:
    """``open(path, mode)`` for writing, the file created (or tightened) 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, mode)


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (a 0600 temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open_private(tmp, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    os.replace(tmp, path)


def secure_home(home: Path) -> Path:
    """Make ``home`` private or refuse it.

    A missing home is created 0700. A home another user owns, or that group or others can
    write, is refused (``HomeNotPrivate``, with the command to run), except a Kubernetes volume
    of the pod's ``fsGroup`` (``fs_group_volume``). A home others can read or enter (0755, as
    older versions made it) is tightened with everything in it, and logged.
    """
    home = Path(home)
    if not home.exists():
        return private_dir(home)
    st = home.stat()
    volume = fs_group_volume(st)
    if st.st_uid != os.geteuid() and not volume:
        raise HomeNotPrivate(
            f"the liveml home {home} belongs to uid {st.st_uid}, not to this user "
            f"(uid {os.geteuid()}): run the server as its owner, or `chown -R {os.geteuid()} "
            f"{home}`", home=str(home))
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and not volume):
        raise HomeNotPrivate(
            f"the liveml home {home} is writable by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}), who could replace its models and database: run "
            f"`chmod -R go-rwx {home}` and start again", home=str(home))
    if volume:  # the pod's own volume: its root stays as Kubernetes made it, the files private
        count = tighten(home, root_too=False)
        log.info("liveml home %s is a volume of group %d (a pod's fsGroup): %d files kept 0600",
                 home, st.st_gid, count)
    elif stat.S_IMODE(st.st_mode) != DIR_MODE:
        count = tighten(home)
        log.warning("liveml home %s was readable by other users (mode %04o): made it 0700 and "
                    "its %d files 0600", home, stat.S_IMODE(st.st_mode), count)
    return home


def fs_group_volume(st: os.stat_result) -> bool:
    """Whether a folder is a Kubernetes volume given to this pod's ``fsGroup``: set-group-ID,
    of one of this process's groups, not writable by others (only the pod's processes)."""
    return bool(st.st_mode & stat.S_ISGID) and not st.st_mode & stat.S_IWOTH and \
        st.st_gid in {os.getegid(), *os.getgroups()}


def tighten(root: Path, root_too: bool = True) -> int:
    """Folders 0700 and files 0600 under ``root`` (symlinks untouched); the number of files."""
    if root_too:
        os.chmod(root, DIR_MODE)
    count = 0
    for base, dirs, files in os.walk(root):
        for name in dirs:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                os.chmod(path, DIR_MODE)
        for name in files:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)
                count += 1
    return count

"""The sandbox every model process runs in (``liveml_runtime inspect`` and ``serve``).

Loading a model is running its code, so a model process must get no more than its submitter
has: a clean environment (what the runtime needs plus the spec's env, never the control plane's
variables), a private folder outside the liveml home (its HOME, TMPDIR and cwd, with its copy of
the artifact), a Landlock allow-list (read+exec on the interpreter and system folders, read-write
on its private folder only, so the home and other replicas' folders are out of reach) and, when
the control plane runs as root, an unprivileged user (``replica_user``, default ``nobody``).
All of it is applied in the child before exec, so model code cannot skip it.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import landlock

log = logging.getLogger("liveml")

# variables of the control plane's environment a model process may see (none is a secret)
PASS_THROUGH = ("PATH", "LANG", "TZ", "JAVA_HOME", "SPARK_HOME", "PYTHONPATH", "LD_LIBRARY_PATH",
                "LIVEML_MAX_BATCH_ROWS", "LIVEML_SPARK_DRIVER_MEMORY",
                "LIVEML_SPARK_JAVA_OPTIONS", "LIVEML_MAX_COLUMNS")
SYSTEM_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
               "/proc", "/sys")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class Sandbox:
    """Builds the private folder, environment and ``Popen`` arguments of one model process."""

    def __init__(self, home: Path, python: str = sys.executable, user: str | None = None,
                 root: Path | None = None) -> None:
        """``user``: who model processes run as ("" = the control plane's user; None = nobody
        when the control plane is root, else the same user); ``root``: where private folders
        are made (default a fresh ``liveml-sandbox-*`` folder in the system's temp folder)."""
        self.home = Path(home).resolve()
        self.python = python
        wanted = ("nobody" if os.geteuid() == 0 else "") if user is None else user
        self.user: pwd.struct_passwd | None = None
        if wanted and (os.geteuid() != 0 or wanted == pwd.getpwuid(os.geteuid()).pw_name):
            log.warning("replica user %r ignored: only a control plane running as root can "
                        "run model processes as another user", wanted)
        elif wanted:
            try:
                self.user = pwd.getpwnam(wanted)
            except KeyError as exc:
                raise ValueError(f"replica user {wanted!r} does not exist: create it, or give "
                                 "an existing unprivileged user with --replica-user") from exc
        self.base = Path(root) if root else Path(tempfile.gettempdir())
        self._root: Path | None = None
        self.landlock = landlock.abi()
        self.warnings: list[str] = []
        self._checked = False
        self._lock = threading.Lock()

    # --- start-up checks ---------------------------------------------------------------------
    def check(self) -> list[str]:
        """Probe that the replica user can run the interpreter and import liveml_runtime (else
        fall back to the control plane's user) and that Landlock works; the warnings to log.
        Runs once (at the control plane's start, else before the first model process)."""
        with self._lock:
            if not self._checked:
                self._checked = True
                self._check()
        return self.warnings

    def _check(self) -> None:
        self.warnings = []
        if not self.landlock:
            self.warnings.append(
                "Landlock is not available on this kernel (Linux 5.13 or later with landlock "
                "in the LSM list): model processes can read what their user can read, the liveml "
                "home included when they run as the control plane's user; use --replica-user "
                "with a root control plane, or a newer kernel")
        if self.user is not None:
            probe = self._private(f"probe-{os.getpid()}")
            try:
                with self.process(probe, {}) as kw:
                    proc = subprocess.run([self.python, "-c", "import liveml_runtime.server"],
                                          capture_output=True, timeout=120, **kw)
                ok, why = proc.returncode == 0, proc.stderr.decode(errors="replace")[-300:]
            except (OSError, subprocess.SubprocessError) as exc:
                ok, why = False, str(exc)
            finally:
                self.release(probe)
            if not ok:
                self.warnings.append(
                    f"replica user {self.user.pw_name!r} cannot run {self.python} and import "
                    f"liveml_runtime ({why.strip() or 'no reason given'}): model processes run as "
                    "the control plane's user instead (without capabilities), with a clean "
                    "environment"
                    f"{' and Landlock' if self.landlock else ''}. Install liveml where that user "
                    "can read it, or give another user with --replica-user")
                self.user = None
        for warning in self.warnings:
            log.warning("sandbox: %s", warning)

    @property
    def root(self) -> Path:
        """This home's folder of private folders, made afresh on first use (what a crashed
        control plane left there goes); 0711: others may pass through to their own folder, not
        list it. A name taken by another user or a symlink gives way to a random one."""
        if self._root is None or not self._root.is_dir():
            self.base.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
            root = self.base / f"liveml-sandbox-{os.geteuid()}-{digest}"
            try:
                st = os.lstat(root)
                if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                    shutil.rmtree(root)
                os.mkdir(root, 0o700)
            except FileNotFoundError:
                os.mkdir(root, 0o700)
            except OSError:  # someone else's, or a symlink: never use it
                root = Path(tempfile.mkdtemp(prefix="liveml-sandbox-", dir=self.base))
            root.chmod(0o711)
            self._root = root
        return self._root

    # --- one process -------------------------------------------------------------------------
    def private(self, name: str) -> Path:
        """A fresh private folder (0700, owned by the replica user) with ``tmp`` inside."""
        self.check()
        return self._private(name)

    def _private(self, name: str) -> Path:
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        (path / "tmp").mkdir(parents=True, mode=0o700)
        path.chmod(0o700)
        self._own(path, path / "tmp")
        return path

    def _own(self, *paths: Path) -> None:
        if self.user is not None:
            for p in paths:
                os.chown(p, self.user.pw_uid, self.user.pw_gid)

    def put(self, private: Path, name: str, source: str | Path | bytes, mode: int = 0o400) -> Path:
        """Hand a file to the process: a copy of ``source`` (a path, or bytes) in its folder."""
        target = private / name
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        target.chmod(mode)
        self._own(target)
        return target

    def release(self, private: Path | None) -> None:
        """Remove a private folder once its process has ended."""
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)

    def environment(self, private: Path, extra: dict[str, str]) -> dict[str, str]:
        """Only what the runtime needs, then ``extra`` (the spec's env and the runtime's own)."""
        env = {k: v for k, v in os.environ.items()
               if k in PASS_THROUGH or k.startswith("LC_")}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(extra)
        # its own folder, whatever the spec says: it may write nowhere else
        env.update(HOME=str(private), TMPDIR=str(private / "tmp"), PYTHONNOUSERSITE="1")
        return env

    def readable(self) -> list[str]:
        """Folders a model process may read and execute from: system folders, the interpreter's
        prefixes and import path, Java, never the home nor a folder that holds it."""
        candidates: Iterable[str] = (
            *SYSTEM_READ, sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path,
            os.path.dirname(os.path.realpath(self.python)),
            *os.environ.get("PYTHONPATH", "").split(os.pathsep),
            os.environ.get("JAVA_HOME", ""), os.environ.get("SPARK_HOME", ""))
        out: list[str] = []
        for c in candidates:
            if not c or not os.path.exists(c):
                continue
            path = Path(c).resolve()
            if _inside(self.home, path) or _inside(self.root, path) or _inside(path, self.home):
                continue  # would open the home (or the other processes' folders) to the model
            if str(path) not in out:
                out.append(str(path))
        return out

    def _ruleset(self, private: Path) -> int | None:
        if not self.landlock:
            return None
        rules = [(p, landlock.READ) for p in self.readable()]
        rules += [("/dev", landlock.DEVICES), ("/dev/shm", landlock.all_rights(self.landlock)),
                  (str(private), landlock.all_rights(self.landlock))]
        return landlock.ruleset(rules)

    @contextmanager
    def process(self, private: Path, env: dict[str, str]) -> Iterator[dict[str, Any]]:
        """``subprocess.Popen`` / ``asyncio.create_subprocess_exec`` arguments for a model
        process in ``private`` with ``env`` added; start the process inside the ``with``."""
        fd = self._ruleset(private)
        kw: dict[str, Any] = {"env": self.environment(private, env), "cwd": str(private),
                              "start_new_session": True, "preexec_fn": _child_setup(fd)}
        if self.user is not None:
            kw.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        try:
            yield kw
        finally:
            if fd is not None:
                os.close(fd)  # the child has its own copy

    def close(self) -> None:
        """Remove every private folder (at shutdown, once the processes have ended)."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def _child_setup(ruleset: int | None) -> Callable[[], None]:
    def setup() -> None:  # pragma: no cover - runs in the child between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        # Linux: the process gets SIGTERM when the control plane dies, even by kill -9 (set
        # after the user change, which clears it)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        os.umask(0o077)  # what it writes is private (the parent's umask is untouched)
        if os.geteuid() == 0:  # still root (no replica user): exec gains no capability
            libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
            for cap in range(64):
                if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; EINVAL past the last
                    break
        if ruleset is not None:
            landlock.restrict(ruleset)
    return setup

"""Landlock (Linux >= 5.13) through ctypes: a file-system allow-list for model processes.

The control plane builds a ruleset in its own process (``ruleset``) and the child applies it
between fork and exec (``restrict``), so model code starts already confined. Only x86_64 and
aarch64 syscall numbers are known; elsewhere ``abi()`` is 0 (unavailable).
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
from collections.abc import Iterable

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | (1 << 14) | (1 << 15)  # + TRUNCATE, IOCTL_DEV
READ = EXECUTE | READ_FILE | READ_DIR
_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
               5: (1 << 16) - 1}
DEVICES = READ | WRITE_FILE | (1 << 15)  # /dev/null, /dev/urandom, terminals


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _numbers() -> tuple[int, int, int] | None:
    return _SYSCALLS.get(platform.machine())


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is unavailable."""
    nums = _numbers()
    if nums is None:
        return 0
    version = _libc().syscall(nums[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, version)


def all_rights(version: int) -> int:
    """Every file-system right the kernel's ABI handles (so anything not granted is denied)."""
    return _ALL_BY_ABI.get(min(version, 5), 0)


def ruleset(rules: Iterable[tuple[str, int]]) -> int:
    """A ruleset fd allowing ``rights`` beneath each existing ``path``; OSError when refused."""
    version = abi()
    if not version:
        raise OSError("Landlock is not available on this kernel")
    nums = _numbers()
    assert nums is not None
    libc, handled = _libc(), all_rights(version)
    attr = ctypes.create_string_buffer(struct.pack("=Q", handled))
    fd = libc.syscall(nums[0], attr, ctypes.c_size_t(8), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path, rights in rules:
            try:
                target = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # an optional folder this system lacks
            try:
                allowed = rights & handled
                if not os.path.isdir(path):
                    allowed &= _FILE_RIGHTS
                beneath = ctypes.create_string_buffer(struct.pack("=Qi", allowed, target))
                if libc.syscall(nums[1], ctypes.c_int(fd), ctypes.c_int(1), beneath,
                                ctypes.c_uint32(0)) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(target)
    except BaseException:
        os.close(fd)
        raise
    return fd


def restrict(fd: int) -> None:  # pragma: no cover - runs in the child between fork and exec
    """Confine the calling process (and what it execs) to ruleset ``fd``; raises when refused."""
    nums = _numbers()
    libc = _libc()
    if nums is None or libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.syscall(nums[2], ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(fd)

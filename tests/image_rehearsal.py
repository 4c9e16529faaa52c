"""Docker images rehearsed without Docker: a Dockerfile's steps run into a folder on this machine.

There is no Docker engine here. ``build`` does what a Dockerfile says and nothing more: a fresh
virtualenv (at ``<root>/usr/local``, where the python base image keeps its Python) stands for the
base image, ``RUN`` steps run with bash (``ARG``s as variables, the virtualenv first on PATH),
``COPY`` copies from the build context, ``ENV``, ``USER``, ``WORKDIR`` and ``ENTRYPOINT`` are
recorded. The image's absolute folders (``/opt``, ``/home``, ``/src``, ``/var/lib``) are moved
under the root. Users are not made on this machine (a ``RUN`` that calls ``useradd`` is skipped):
the process runs with ``USER``'s ids when the test runs as root and the Python may be run by
anyone, else as the test's own user. Not rehearsed: the base image's OS and its packages (apt).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kube_sim import expand

FOLDERS = re.compile(r"(?<![\w/.])/(opt|home|src|var/lib)(?=[/\s\"']|$)")


@dataclass
class Image:
    """The image's file system (under ``root``) and its configuration."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    user: tuple[int, int] | None = None
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    base: str = ""

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def rooted(self, text: str) -> str:
        """Absolute paths of the image's own folders, moved under ``root``."""
        return FOLDERS.sub(lambda m: f"{self.root}/{m.group(1)}", text)

    def owned(self, inside: str) -> Path:
        """A folder of the image the process may write (its home, a mounted volume)."""
        path = self.path(inside)
        path.mkdir(parents=True, exist_ok=True)
        if self.user:
            os.chown(path, *self.user)
        return path

    def popen(self, argv: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` in the image: its env, its WORKDIR, its USER."""
        as_user = dict(user=self.user[0], group=self.user[1], extra_groups=[]) if self.user else {}
        return subprocess.Popen(argv, env={**self.env, "HOME": str(self.path(self.workdir)), **env},
                                cwd=self.owned(self.workdir), **as_user, **kwargs)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(parts[0].upper(), parts[1].strip() if len(parts) > 1 else "")
            for line in text.splitlines() if line.strip() for parts in [line.strip().split(None, 1)]]


def base_python() -> str:
    """The Python the base image stands on: the system's (any user may run it, as in the image)
    when it is 3.11 or newer with venv, else this one."""
    system = "/usr/bin/python3"
    check = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
    if os.path.exists(system) and subprocess.run([system, "-c", check]).returncode == 0:
        return system
    return sys.executable


def _runs_for_anyone(path: str) -> bool:
    """Whether every folder above ``path`` lets other users through (``/root`` does not)."""
    return all(os.stat(p).st_mode & 0o001 for p in Path(os.path.realpath(path)).parents)


def new_root() -> Path:
    """A folder other users may enter (pytest's tmp_path is private to its user)."""
    root = Path(tempfile.mkdtemp(prefix="liveml-image-"))
    root.chmod(0o755)
    return root


def build(dockerfile: Path, context: Path, root: Path, build_args: dict[str, str]) -> Image:
    """Run ``dockerfile``'s steps into ``root`` (see the module docstring)."""
    python = base_python()
    image = Image(root)
    venv = root / "usr" / "local"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    args: dict[str, str] = {}
    for op, rest in instructions(dockerfile):
        if op == "FROM":
            image.base = rest
        elif op == "ARG":
            name, _, default = rest.partition("=")
            args[name] = build_args.get(name, shlex.split(default)[0] if default.strip() else "")
        elif op == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                image.env[key] = image.rooted(value)
        elif op == "RUN":
            if "useradd" in rest:  # users are not made on this machine: USER's ids are used
                continue
            env = {**os.environ, **image.env, **args, "VIRTUAL_ENV": str(venv),
                   "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
            subprocess.run(["bash", "-ec", image.rooted(rest)], env=env, check=True)
        elif op == "COPY":
            *sources, dst = shlex.split(rest)
            target = image.path(dst)
            for src in sources:
                into = target / Path(src).name if dst.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                if (context / src).is_dir():
                    shutil.copytree(context / src, into, ignore=shutil.ignore_patterns(
                        "__pycache__"))
                else:
                    shutil.copy2(context / src, into)
        elif op == "USER":
            uid, _, gid = rest.partition(":")
            image.user = (int(uid), int(gid or uid))
        elif op == "WORKDIR":
            image.workdir = rest
        elif op == "ENTRYPOINT":
            image.entrypoint = list(eval(rest))  # noqa: S307 - the JSON form, a list literal
    image.env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    if os.geteuid() != 0 or not _runs_for_anyone(python):
        image.user = None  # the test's own user runs the image's processes
    return image


def container_env(container: dict[str, Any], pod_name: str, secrets: dict[str, str]
                  ) -> dict[str, str]:
    """The kubelet's env of ``container``: values with ``$(VAR)`` expansion, ``fieldRef``
    ``metadata.name``, ``secretKeyRef`` from ``secrets`` (``"<secret>/<key>"`` -> value)."""
    values: dict[str, str] = {}
    for item in container.get("env") or []:
        source = item.get("valueFrom")
        if source is None:
            values[item["name"]] = expand(str(item.get("value", "")), values)
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            values[item["name"]] = pod_name
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            values[item["name"]] = secrets[f"{ref['name']}/{ref['key']}"]
        else:
            raise AssertionError(f"the rehearsal does not resolve {item}")
    return values

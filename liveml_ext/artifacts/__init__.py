"""Model artifact store: content-addressed files under an fsspec URL (a local folder by default)."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import fsspec

from ..store.home import private_dir, write_private


class ArtifactStore:
    """Stores artifact bytes by SHA-256 and hands replicas a local path to load."""

    def __init__(self, url: str, cache_dir: Path) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.cache_dir = Path(cache_dir)
        if self.is_local:  # in the home: private, as everything there
            private_dir(Path(self.root))
        else:
            self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, sha256: str) -> str:
        return f"{self.root}/{sha256[:2]}/{sha256}"

    def put(self, data: bytes) -> tuple[str, int]:
        """Store bytes (idempotent) and return (sha256, size)."""
        sha = hashlib.sha256(data).hexdigest()
        path = self._path(sha)
        if not self.fs.exists(path) and self.is_local:
            private_dir(Path(path).parent)
            write_private(Path(path), data)
        elif not self.fs.exists(path):
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        return sha, len(data)

    def exists(self, sha256: str) -> bool:
        return len(sha256) == 64 and self.fs.exists(self._path(sha256))

    def size(self, sha256: str) -> int:
        return int(self.fs.size(self._path(sha256)))

    def open(self, sha256: str) -> Any:
        """The artifact's bytes as a binary file object (close it)."""
        return self.fs.open(self._path(sha256), "rb")

    def uri(self, sha256: str) -> str:
        return self.fs.unstrip_protocol(self._path(sha256))

    @property
    def is_local(self) -> bool:
        """Whether the store is this machine's file system (not a URL others could read)."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return bool({"file", "local"} & set(protocols))

    def local_path(self, sha256: str) -> str:
        """A local file with the artifact: the file itself, or a cached copy of a remote one."""
        path = self._path(sha256)
        if self.is_local:
            return path
        target = self.cache_dir / sha256
        if not target.exists():
            private_dir(target.parent)
            fd, tmp = tempfile.mkstemp(dir=target.parent)  # mkstemp makes it 0600
            os.close(fd)
            self.fs.get_file(path, tmp)
            os.replace(tmp, target)
        return str(target)

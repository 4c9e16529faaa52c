"""Model artifact store: content-addressed files under an fsspec URL (a local folder by default)."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import fsspec


class ArtifactStore:
    """Stores artifact bytes by SHA-256 and hands replicas a local path to load."""

    def __init__(self, url: str, cache_dir: Path) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.fs.makedirs(self.root, exist_ok=True)
        self.cache_dir = Path(cache_dir)

    def _path(self, sha256: str) -> str:
        return f"{self.root}/{sha256[:2]}/{sha256}"

    def put(self, data: bytes) -> tuple[str, int]:
        """Store bytes (idempotent) and return (sha256, size)."""
        sha = hashlib.sha256(data).hexdigest()
        self._store(sha, lambda tmp: self.fs.pipe_file(tmp, data))
        return sha, len(data)

    def put_file(self, local: str, sha256: str) -> None:
        """Store a local file whose SHA-256 the caller computed (idempotent)."""
        self._store(sha256, lambda tmp: self.fs.put_file(local, tmp))

    def _store(self, sha256: str, write: Any) -> None:
        path = self._path(sha256)
        if not self.fs.exists(path):
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            try:
                write(tmp)
                self.fs.mv(tmp, path)
            finally:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)

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
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent)
            os.close(fd)
            self.fs.get_file(path, tmp)
            os.replace(tmp, target)
        return str(target)

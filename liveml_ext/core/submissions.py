"""Model submissions: uploaded artifacts, their sandboxed inspection and the submission rows.

Plain Python (no tornado, no Jupyter): the handlers call one ``Submissions`` service; the
control plane builds it with its store, registry, artifact store and the model sandbox.
"""
from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from liveml_runtime.api import Column
from liveml_runtime.schema import InputExample

from . import models as m
from .errors import InvalidArgument, InvalidModelArtifact
from .registry import Principal, Registry

if TYPE_CHECKING:
    from ..artifacts import ArtifactStore
    from ..sandbox import Sandbox
    from ..store.db import Store


class Submissions:
    """Store artifacts, inspect them in ``sandbox`` (a separate process), record submissions."""

    def __init__(self, store: Store, registry: Registry, artifacts: ArtifactStore,
                 sandbox: Sandbox) -> None:
        self.store, self.registry, self.artifacts, self.sandbox = \
            store, registry, artifacts, sandbox

    def put_artifact(self, path: str, sha256: str, size: int) -> dict[str, Any]:
        """Store an uploaded file (its SHA-256 computed while it streamed in)."""
        if not size:
            raise InvalidArgument("the model artifact is empty", field="body")
        self.artifacts.put_file(path, sha256)
        return {"artifactId": sha256, "bytes": size}

    async def inspect(self, sha256: str, example: InputExample | None = None) -> dict[str, Any]:
        """Load the artifact in a separate, sandboxed process (``Sandbox``: a copy of the
        artifact in a private folder, no access to the home): its API, requirements, a
        self-test (on the input example's rows when there is one)."""
        path = self.artifacts.local_path(sha256)
        sandbox = self.sandbox
        loop = asyncio.get_running_loop()
        private = await loop.run_in_executor(None, sandbox.private,
                                             f"inspect-{secrets.token_hex(8)}")
        try:
            copy = await loop.run_in_executor(None, sandbox.put, private, Path(path).name, path)
            args = [sandbox.python, "-m", "liveml_runtime", "inspect", str(copy)]
            if example is not None:
                example_file = sandbox.put(private, "input-example.json",
                                           orjson.dumps(example.to_dict()))
                args += ["--input-example", str(example_file)]
            with sandbox.process(private, {"PYTHONUNBUFFERED": "1"}) as kw:
                proc = await asyncio.create_subprocess_exec(
                    *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **kw)
            out, err = await proc.communicate()
        finally:
            await loop.run_in_executor(None, sandbox.release, private)
        try:
            doc = orjson.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        except orjson.JSONDecodeError:
            doc = {}
        if proc.returncode != 0 or "api" not in doc:
            error = doc.get("error", {})
            params = dict(error.get("parameters") or {})
            message = params.pop("message", None) or error.get("message") or \
                err.decode(errors="replace")[-2000:]
            if params.get("field") == "inputExample":  # the example does not fit the model
                raise InvalidArgument(message, artifactId=sha256, **params)
            if params.get("reason") == "inputsUndeclared":  # says what to do itself
                raise InvalidModelArtifact(message, artifactId=sha256, **params)
            raise InvalidModelArtifact(
                f"the model could not be loaded and self-tested: {message}. Save a fitted "
                "estimator or a ModelAdapter with joblib.dump, in an environment with the same "
                "packages as this server", artifactId=sha256)
        return doc

    @staticmethod
    def input_example(req: m.CreateSubmission) -> InputExample | None:
        """The request's input example, its columns given or inferred, its rows checked."""
        if req.input_example is None:
            if req.input_schema is not None:
                raise InvalidArgument("inputSchema describes the rows of inputExample: give "
                                      "both, or neither", field="inputSchema")
            return None
        columns = None
        if req.input_schema is not None:
            try:
                columns = [Column(**c.model_dump()) for c in req.input_schema]
            except ValueError as exc:
                raise InvalidArgument(f"inputSchema: {exc}", field="inputSchema") from exc
        return InputExample.of(req.input_example, columns)

    async def submit(self, objective: str, req: m.CreateSubmission,
                     who: Principal) -> dict[str, Any]:
        """Check the objective and the artifact, inspect it, record the submission."""
        with self.store.session() as s:  # fail fast on a bad objective, before the subprocess
            obj = self.registry.objective(s, objective, who)
            who.require(obj.namespace)
        if not self.artifacts.exists(req.artifact_id):
            raise InvalidArgument(f"no uploaded artifact {req.artifact_id!r}; PUT it to "
                                  "/liveml/api/artifacts first", field="artifactId")
        info = await self.inspect(req.artifact_id, self.input_example(req))
        return self.registry.add_submission(objective, req.name, self.artifacts.uri(req.artifact_id),
                                            req.artifact_id, self.artifacts.size(req.artifact_id),
                                            info, who)

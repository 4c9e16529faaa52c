"""Management REST API under ``<base>/liveml/api/`` (described by liveml_ext/openapi.json)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..core import models as m
from ..core.errors import ArtifactNotFound, InvalidArgument, PermissionDenied
from ..core.names import ARTIFACT_ID
from ..core.registry import Principal
from ..core.timewindow import window
from ..observability.logstore import MAX_LIMIT
from ..observability.metrics import KINDS
from .base import LiveMLHandlerMixin, ManagementHandler, UploadHandler

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"


class NamespacesHandler(ManagementHandler):
    def get(self) -> None:
        self.reply({"data": self.cp.registry.list_namespaces(self.principal)})

    def post(self) -> None:
        req = self.parse(m.CreateNamespace)
        self.principal.require(req.name, "admin")
        self.cp.registry.ensure_namespace(req.name)
        self.reply({"name": req.name}, 201)


class ObjectivesHandler(ManagementHandler):
    def get(self) -> None:
        ns = self.get_argument("namespace", None)
        self.reply({"data": self.cp.registry.list_objectives(self.principal, ns)})

    def post(self) -> None:
        self.reply(self.cp.registry.create_objective(self.parse(m.CreateObjective),
                                                     self.principal), 201)


class ObjectiveHandler(ManagementHandler):
    def get(self, ref: str) -> None:
        self.reply(self.cp.registry.get_objective(ref, self.principal))


class ArtifactsHandler(UploadHandler):
    """Upload model bytes (``PUT``, octet-stream); the answer's artifactId makes a submission.

    The body streams to a temporary file (up to ``max_artifact_bytes``), never into memory."""

    async def put(self) -> None:
        self.principal.require(self.principal.namespace or "default")
        self.reply(await self.stored_upload(self.cp.submissions.put_artifact), 201)


class ArtifactHandler(ManagementHandler):
    """``GET``: an artifact's bytes, for replicas that cannot read the artifact store (they
    present their credential, ``X-LiveML-Replica-Token``, good for their own release's artifact
    only) and for admins."""

    replica_artifact: str | None = None  # the one artifact a replica credential may read

    least_scope = "query"  # the replica's principal; get() checks who it is

    def authenticate(self) -> Principal:
        given = self.request.headers.get("X-LiveML-Replica-Token", "")
        if given:
            self.replica_artifact = self.cp.gateway.credentials.artifact(given)
            if self.replica_artifact is not None:
                return Principal(name="replica", scope="query")
        return super().authenticate()

    async def get(self, sha256: str) -> None:
        p, allowed = self.principal, self.replica_artifact
        if allowed is not None and allowed != sha256:
            raise PermissionDenied("a replica's credential reads its own release's artifact "
                                   "only", artifactId=sha256)
        if allowed is None and (p.scope != "admin" or p.namespace is not None):
            raise PermissionDenied("artifacts are read by replicas and admins only",
                                   requiredScope="admin")
        if not ARTIFACT_ID.fullmatch(sha256) or not self.cp.artifacts.exists(sha256):
            raise ArtifactNotFound(f"no artifact {sha256!r}", artifactId=sha256)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(self.cp.artifacts.size(sha256)))
        loop = asyncio.get_running_loop()
        with self.cp.artifacts.open(sha256) as fh:
            while chunk := await loop.run_in_executor(None, fh.read, 1 << 20):
                self.write(chunk)
                await self.flush()
        self.finish()


class SubmissionsHandler(ManagementHandler):
    def get(self, ref: str) -> None:
        self.reply({"data": self.cp.registry.list_submissions(ref, self.principal)})

    async def post(self, ref: str) -> None:
        """201 with a new submission; 200 with the existing one when its name and artifact are
        the request's (a retry, checked before the artifact is inspected again); 409
        ``SubmissionAlreadyExists`` when the name holds another artifact."""
        req = self.parse(m.CreateSubmission)
        existing = self.cp.registry.existing_submission(ref, req.name, req.artifact_id,
                                                        self.principal)
        if existing is not None:
            return self.reply(existing)
        self.reply(await self.cp.submissions.submit(ref, req, self.principal), 201)


class ReleasesHandler(ManagementHandler):
    def get(self, ref: str) -> None:
        self.reply({"data": self.cp.registry.list_releases(ref, self.principal)})

    def post(self, ref: str) -> None:
        """201 with a new release; 200 with the existing one, unchanged (its tag is not moved),
        when this submission already holds the version; 409 when another one does."""
        req = self.parse(m.CreateRelease)
        existing = self.cp.registry.existing_release(ref, req, self.principal)
        if existing is not None:
            return self.reply(existing)
        self.reply(self.cp.registry.create_release(ref, req, self.principal), 201)


class ReleaseTagHandler(ManagementHandler):
    """``PUT .../releases/{version}/tag {"tag": "PRODUCTION"}``: move a tag to this release."""

    def put(self, ref: str, version: str) -> None:
        req = self.parse(m.TagRelease)
        self.reply(self.cp.registry.tag_release(ref, version, req.tag, self.principal))


class PromoteHandler(ManagementHandler):
    """``POST .../releases/{version}/promote``: mark as production."""

    def post(self, ref: str, version: str) -> None:
        self.reply(self.cp.registry.tag_release(ref, version, "PRODUCTION", self.principal))


class TagHistoryHandler(ManagementHandler):
    def get(self, ref: str) -> None:
        self.reply({"data": self.cp.registry.tag_history(ref, self.principal)})


class DeploymentsHandler(ManagementHandler):
    def get(self) -> None:
        ns = self.get_argument("namespace", None)
        self.reply({"data": self.cp.deployments.list(self.principal, ns)})

    def post(self) -> None:
        self.reply(self.cp.deployments.create(self.parse(m.CreateLiveDeployment),
                                              self.principal), 201)


class DeploymentHandler(ManagementHandler):
    def get(self, ref: str) -> None:
        self.reply(self.cp.deployments.get(ref, self.principal))

    def patch(self, ref: str) -> None:
        self.reply(self.cp.deployments.update(ref, self.parse(m.UpdateLiveDeployment),
                                              self.principal))

    def delete(self, ref: str) -> None:
        self.reply(self.cp.deployments.delete(ref, self.principal))


class DeploymentActionHandler(ManagementHandler):
    """``POST deployments/{ref}/disable`` and ``/enable``."""

    def post(self, ref: str, action: str) -> None:
        self.reply(self.cp.deployments.set_enabled(ref, action == "enable", self.principal))


class ApiNameHandler(ManagementHandler):
    def put(self, ref: str) -> None:
        req = self.parse(m.SetApiName)
        self.reply(self.cp.deployments.update(ref, m.UpdateLiveDeployment(api_name=req.api_name),
                                              self.principal))


class RuntimeConfigurationHandler(ManagementHandler):
    """``PUT deployments/{ref}/runtime-configuration``: replace it (re-rolls when needed)."""

    def get(self, ref: str) -> None:
        self.reply(self.cp.deployments.runtime_configuration(ref, self.principal))

    def put(self, ref: str) -> None:
        self.reply(self.cp.deployments.replace_runtime(ref, self.parse(m.RuntimeConfiguration),
                                                       self.principal))


def _limit(handler: LiveMLHandlerMixin, default: int = 100, most: int = MAX_LIMIT) -> int:
    """The ``limit`` query argument: a whole number from 1 to ``most``."""
    text = handler.get_argument("limit", str(default))
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise InvalidArgument(f"limit must be a whole number from 1 to {most}, not {text!r}",
                              field="limit")
    return limit


class EventsHandler(ManagementHandler):
    def get(self, ref: str) -> None:
        self.reply({"data": self.cp.deployments.events(ref, self.principal, _limit(self))})


def _window(handler: LiveMLHandlerMixin) -> tuple[Any, Any]:
    arg = handler.get_argument
    return window(arg("since", None), arg("start", None), arg("end", None))


def _log_args(handler: LiveMLHandlerMixin, ref: str) -> dict[str, Any]:
    """The deployment (checked for access) and the search arguments of a logs request."""
    arg = handler.get_argument
    rid = handler.cp.deployments.rid(ref, handler.principal)
    start, end = _window(handler)
    columns = [c.strip() for c in arg("columns", "").split(",") if c.strip()] or None
    return {"deployment_rid": rid, "query": arg("query", ""), "start": start, "end": end,
            "columns": columns}


class LogsHandler(ManagementHandler):
    """``GET deployments/{ref}/logs?query=&since=|start=&end=&columns=&limit=&pageToken=``."""

    async def get(self, ref: str) -> None:
        args = _log_args(self, ref)
        limit = _limit(self)
        token = self.get_argument("pageToken", None)
        loop = asyncio.get_running_loop()
        page = await loop.run_in_executor(
            None, lambda: self.cp.logs.search(limit=limit, page_token=token, **args))
        self.reply(page)


class LogsDownloadHandler(ManagementHandler):
    """``GET deployments/{ref}/logs/download?...``: every matching record as a text file."""

    async def get(self, ref: str) -> None:
        args = _log_args(self, ref)
        lines = self.cp.logs.export(**args)  # raises on a bad query before anything is sent
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(None, next, lines, None)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Disposition",
                        f'attachment; filename="{ref.rsplit(".", 1)[-1]}-logs.txt"')
        chunk: str | None = first
        while chunk is not None:
            self.write(chunk)
            await self.flush()
            chunk = await loop.run_in_executor(None, next, lines, None)
        self.finish()


def _history(handler: LiveMLHandlerMixin, ref: str, limit: int | None) -> Any:
    """The read of the deployment's history records (a pyarrow Table, by a worker thread) the
    request's filters select: ``since``/``start``/``end``, ``status`` (2xx, 4xx, 5xx, error or
    a code), ``release``. What was captured before is written first, so a read sees every
    query answered before it."""
    from ..capture import status_filter

    arg = handler.get_argument
    rid = handler.cp.deployments.rid(ref, handler.principal)
    start, end = _window(handler)
    status, release = arg("status", None), arg("release", None)
    try:
        status_filter(status)
    except ValueError as exc:
        raise InvalidArgument(str(exc), field="status", value=status) from None
    cp = handler.cp

    def read() -> Any:
        cp.capture.flush()
        return cp.history.read(rid, start, end, status=status, release=release, limit=limit)

    return rid, asyncio.get_running_loop().run_in_executor(None, read)


class HistoryHandler(ManagementHandler):
    """``GET deployments/{ref}/history?since=|start=&end=&status=&release=&limit=``."""

    async def get(self, ref: str) -> None:
        from ..capture.store import rows

        rid, reading = _history(self, ref, _limit(self))
        table = await reading
        data = [m.HistoryRecord.model_validate(
            {**r, "request": _json(r["request"]), "response": _json(r["response"])}).dump()
            for r in rows(table)]
        self.reply(m.HistoryPage(data=data, dropped=self.cp.capture.dropped[rid]).dump())


def _json(text: str | None) -> Any:
    """A captured body as JSON, or as the text it is when it is not JSON."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


class HistoryDownloadHandler(ManagementHandler):
    """``GET deployments/{ref}/history/download?...``: every matching record, one Parquet file."""

    async def get(self, ref: str) -> None:
        from ..capture.store import to_parquet_bytes

        _, reading = _history(self, ref, None)
        table = await reading
        data = await asyncio.get_running_loop().run_in_executor(None, to_parquet_bytes, table)
        self.set_header("Content-Type", "application/vnd.apache.parquet")
        self.set_header("Content-Disposition",
                        f'attachment; filename="{ref.rsplit(".", 1)[-1]}-history.parquet"')
        self.finish(data)


class MetricsHandler(ManagementHandler):
    """``GET deployments/{ref}/metrics?kind=&since=|start=&end=&node=``."""

    async def get(self, ref: str) -> None:
        rid = self.cp.deployments.rid(ref, self.principal)
        kind = self.get_argument("kind", None)
        if kind is not None and kind not in KINDS:
            raise InvalidArgument(f"kind must be one of {list(KINDS)}", field="kind", value=kind)
        start, end = _window(self)
        node = self.get_argument("node", None)
        rows = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.cp.metrics.query(rid, start, end, kind, node))
        self.reply({"data": rows})


class PrometheusHandler(ManagementHandler):
    """``GET metrics``: request counters and latency histograms in Prometheus text format."""

    def get(self) -> None:
        rids = self.cp.deployments.visible_rids(self.principal)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(_Only(self.cp.request_stats.registry, rids)))


class _Only:
    """A registry's series of the given deployments only (all when ``rids`` is None)."""

    def __init__(self, registry: Any, rids: set[str] | None) -> None:
        self.registry, self.rids = registry, rids

    def collect(self) -> Any:
        for family in self.registry.collect():
            if self.rids is not None:
                family.samples = [x for x in family.samples
                                  if x.labels.get("deployment") in self.rids]
            yield family


class ProfilesHandler(ManagementHandler):
    least_scope = "query"

    def get(self) -> None:
        self.reply(self.cp.profiles.describe())


class TokensHandler(ManagementHandler):
    """``GET``: the tokens the caller may manage (admin: all; manage: its namespace's);
    ``POST``: a new one (its secret is in this answer only)."""

    def get(self) -> None:
        self.reply({"data": self.cp.tokens.list(self.principal)})

    def post(self) -> None:
        self.reply(self.cp.tokens.create(self.parse(m.CreateToken), self.principal), 201)


class TokenHandler(ManagementHandler):
    """``DELETE tokens/{id}``: revoke a token; it gets 401 at once."""

    def delete(self, token_id: str) -> None:
        self.reply(self.cp.tokens.revoke(token_id, self.principal))


class OpenApiHandler(ManagementHandler):
    def get(self) -> None:
        self.reply(orjson.loads(OPENAPI.read_bytes()))


class WhoAmIHandler(ManagementHandler):
    least_scope = "query"

    def get(self) -> None:
        p = self.principal
        self.reply(m.DescribeWhoAmI(name=p.name, scope=p.scope, namespace=p.namespace,
                                    backend=self.cp.backend_name, token_id=p.token_id,
                                    expires_at=p.expires_at).dump())

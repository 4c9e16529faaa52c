"""Generate ``liveml_ext/openapi.json``: the OpenAPI 3.1 description of liveml's REST API.

    python tools/gen_openapi.py           # (re)write liveml_ext/openapi.json
    python tools/gen_openapi.py --check   # exit 1 if the committed file is out of date

Component schemas come from the pydantic models of ``liveml_ext.core.models`` (plus a few
documentation-only models below for replies the handlers build by hand); the operations are
listed in ``OPERATIONS``, each naming the handler mixin that serves it. The build checks that each
operation reaches that handler through ``liveml_ext.handlers.ROUTES`` and that every method of every
route's handler is documented; ``tests/test_openapi.py`` checks the document against the routes
independently, down to each alternative of a route (``disable|enable``, ``(/v2)?``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import liveml_ext.core.errors as core_errors
import liveml_ext.gateway.pool as gateway_pool
import liveml_ext.observability.logquery as logquery
import liveml_ext.observability.logstore as logstore
import liveml_runtime.errors as runtime_errors
from liveml_ext.core import models as m
from liveml_ext.core.errors import LiveMLError
from liveml_ext.handlers import ROUTES, FallbackHandler
from liveml_ext.handlers import inference as inf
from liveml_ext.handlers import management as mg

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "liveml_ext" / "openapi.json"
REF = "#/components/schemas/{model}"
METHODS = ("get", "post", "put", "patch", "delete")
E = core_errors
InferenceTimeout = gateway_pool.InferenceTimeout
InvalidLogQuery = logquery.InvalidLogQuery
InvalidLogColumn = logstore.InvalidLogColumn
#: Modules whose error classes make the envelope's ``errorCode`` vocabulary.
ERROR_MODULES: tuple[ModuleType, ...] = (runtime_errors, core_errors, gateway_pool, logquery,
                                         logstore)
INVALID_INPUT_KINDS = ["requiredValueMissing", "typeMismatch", "unknownInputName",
                       "invalidTabularFormat", "emptyRows", "tooManyColumns", "sparseRows",
                       "tooDeep", "duplicateKey"]
#: ``errorType.type`` of an ``InferenceFailure`` that is not the model raising
FAILURE_KINDS = ["nonFiniteOutput"]


# --- documentation-only shapes (replies built by hand in the handlers) ------------------------
class NamespaceCreated(m.Model):
    """The namespace that now exists (creating an existing one is not an error)."""

    name: str


class ArtifactUploaded(m.Model):
    """An uploaded model file: give `artifactId` to `POST .../submissions`."""

    artifact_id: str = Field(description="The SHA-256 of the bytes, in hex.")
    bytes: int = Field(description="The size of the artifact in bytes.")


class DeploymentDeleted(m.Model):
    rid: str
    deleted: bool


class TagEvent(m.Model):
    """One move of a tag onto a release, oldest first."""

    release_rid: str
    version: str
    tag: m.Tag
    at: str = Field(json_schema_extra={"format": "date-time"})
    by: str


class TransformRequest(BaseModel):
    """The v1 shape, for a model with one tabular input and one tabular output."""

    model_config = ConfigDict(extra="forbid")

    requestData: list[dict[str, Any]] = Field(description="The input rows, one object per row.")
    requestParams: dict[str, Any] = Field(
        default_factory=dict, description="Values of the model's declared parameters, by name.")


class TransformResponse(BaseModel):
    modelUuid: str = Field(description="The UUID of the model (submission) that answered.")
    responseData: list[dict[str, Any]] = Field(description="The output rows, one per input row.")


class TransformV2Request(BaseModel):
    """One key per named input: rows (a list of objects) for a tabular input, else a value."""

    model_config = ConfigDict(extra="allow")


class TransformV2Response(BaseModel):
    """One key per named output of the model: rows for a tabular output, else a value."""

    model_config = ConfigDict(extra="allow")


# --- operations ---------------------------------------------------------------------------------
PATH_PARAMETERS = {
    "objective": "The objective: its RID, `NAMESPACE/NAME` (URL-encode the slash as `%2F`), or a "
                 "name that is unique among the objectives the caller can see.",
    "version": "The release's version, unique within the objective.",
    "deployment": "The live deployment: its RID, its API name or its name; prefix `NAMESPACE/` "
                  "(slash URL-encoded as `%2F`) to choose the namespace.",
    "artifact": "The artifact's SHA-256 (hex), as `PUT /liveml/api/artifacts` answered.",
    "token": "The token's id (`GET /liveml/api/tokens`; not its secret).",
    "rid": "The live deployment's RID (`ri.foundry-ml-live.main.live-deployment.<uuid>`).",
}
NAMESPACE_QUERY = {"name": "namespace", "in": "query", "required": False,
                   "description": "Only this namespace.", "schema": {"type": "string"}}
#: parse(): bad fields, not JSON, a key twice, not JSON's media type, over the JSON cap
BODY = (E.InvalidArgument, E.MalformedRequestBody, E.DuplicateJsonKey, E.UnsupportedMediaType,
        E.RequestEntityTooLarge)
#: Every operation: no or a bad token; a token without the scope (or a cross-site cookie call
#: in Jupyter); a server fault.
COMMON_ERRORS = (E.Unauthorized, E.PermissionDenied, E.CrossSiteRequestRefused, E.Internal)


@dataclass(frozen=True)
class Op:
    path: str
    method: str
    handler: type
    operation_id: str
    tag: str
    summary: str
    response: dict[str, Any]
    status: int = 200
    body: type[BaseModel] | None = None
    errors: tuple[type[LiveMLError], ...] = ()
    description: str = ""
    query: tuple[dict[str, Any], ...] = ()
    media: str = "application/json"


def ref(model: type) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def listing(model: type) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "additionalProperties": False,
            "properties": {"data": {"type": "array", "items": ref(model)}}}


API = "/liveml/api"
OBJ = f"{API}/objectives/{{objective}}"
REL = f"{OBJ}/releases/{{version}}"
DEP = f"{API}/deployments/{{deployment}}"
INF = "/foundry-ml-live/api/inference/transform/{rid}"
LIVE_DEPLOYMENT = ref(m.DescribeLiveDeployment)
TAG_ERRORS = (E.PermissionDenied, E.ObjectiveNotFound, E.AmbiguousName, E.ReleaseNotFound)
DEPLOYMENT_ERRORS = (E.LiveDeploymentNotFound, E.AmbiguousName)
CONFIG_ERRORS = (E.ProfileNotFound, E.ThreadCountTooHigh, E.InvalidGpuCount, E.GpuTypeNotAvailable)
WINDOW_QUERY = tuple(
    {"name": name, "in": "query", "required": False, "description": text,
     "schema": {"type": "string"}}
    for name, text in (("since", "A window back from now, e.g. 15m, 1h (default), 7d."),
                       ("start", "ISO 8601 start time (instead of since)."),
                       ("end", "ISO 8601 end time (default now).")))
LOG_QUERY = {"name": "query", "in": "query", "required": False,
             "description": 'e.g. `tags.node_id:NODE AND level:ERROR`, `"free text"`.',
             "schema": {"type": "string"}}
COLUMNS_QUERY = {"name": "columns", "in": "query", "required": False,
                 "description": "Comma-separated columns, e.g. time,level,node_id,message.",
                 "schema": {"type": "string"}}
LIMIT_QUERY = {"name": "limit", "in": "query", "required": False,
               "description": "At most this many, newest first.",
               "schema": {"type": "integer", "default": 100, "minimum": 1, "maximum": 10000}}
HISTORY_QUERY = (
    {"name": "status", "in": "query", "required": False,
     "description": "2xx, 4xx, 5xx, error (400 and above) or one code such as 404.",
     "schema": {"type": "string"}},
    {"name": "release", "in": "query", "required": False,
     "description": "Only the queries this release version answered.",
     "schema": {"type": "string"}})
HISTORY_NOTE = ("Captured while the deployment's runtimeConfiguration.capture is not off: "
                "failed queries always, successful ones by captureSample; bodies over "
                "captureMaxBytes are flagged, not kept. Kept 7 days by default "
                "(--capture-retention-days).")
INFERENCE_ERRORS = (E.InferenceInvalidInput, E.InferenceFailure, E.PermissionDenied,
                    E.LiveDeploymentNotFound, E.RequestEntityTooLarge, E.MalformedRequestBody,
                    E.TooManyRequests, E.ServiceUnavailable, InferenceTimeout,
                    E.UnsupportedMediaType, E.ReplicaFailed)
INFERENCE_NOTE = (
    "Needs `query` rights on the deployment's namespace (a token of another namespace gets the "
    "404 of an unknown RID). The body must be JSON (`Content-Type: application/json`, or none; "
    "another type is a 415). It is forwarded to a ready replica (least loaded first; sent to "
    "another replica only when the first never received it: connection refused, or a 503 while "
    "it loads or drains), so a rolling update drops no request; a replica that fails while "
    "handling the request answers 502 `ReplicaFailed`, and the request is not resent. Bodies "
    "over the server's limit (50 MiB by default) are refused with 413. A table needs at least "
    "one row (`emptyRows`); its rows carry at most 1000 distinct keys, or twice the declared "
    "columns when more (`tooManyColumns`; the replica's `LIVEML_MAX_COLUMNS` sets it), and "
    "undeclared keys most rows lack may not make the model's frame hold more than 10 cells per "
    "value sent (`sparseRows`); the "
    "body nests at most 254 levels (`tooDeep`) and repeats no key in an object "
    "(`duplicateKey`); a parameter given as null is refused (leave it out for its default). "
    "Invalid input is a 400 `InferenceInvalidInput` whose `parameters.errorType.type` is one of "
    + ", ".join(f"`{k}`" for k in INVALID_INPUT_KINDS) + " (with `input`, and for rows `column` "
    "and `row`; a `typeMismatch` also `expected`, the declared type, and `actual`, the JSON kind "
    "of the value); an exception in the model is a 400 `InferenceFailure`, and so is an "
    "infinite value in a model's output table (`errorType.type` `nonFiniteOutput`, with "
    "`column` and `row`; a NaN is written as null). Declared types are "
    "checked on every query: string, integer, double, boolean, datetime (ISO 8601), date "
    "(YYYY-MM-DD), decimal (a string or number within its precision and scale), array, any; a "
    "nullable column accepts null or no key.")

OPERATIONS: list[Op] = [
    Op(f"{API}/namespaces", "get", mg.NamespacesHandler, "listNamespaces", "namespaces",
       "List the namespaces the caller can see", listing(m.DescribeNamespace)),
    Op(f"{API}/namespaces", "post", mg.NamespacesHandler, "createNamespace", "namespaces",
       "Create a namespace (idempotent; needs admin scope on it)", ref(NamespaceCreated), 201,
       m.CreateNamespace, (*BODY, E.PermissionDenied)),
    Op(f"{API}/objectives", "get", mg.ObjectivesHandler, "listObjectives", "objectives",
       "List the objectives the caller can see", listing(m.DescribeObjective),
       query=(NAMESPACE_QUERY,)),
    Op(f"{API}/objectives", "post", mg.ObjectivesHandler, "createObjective", "objectives",
       "Create an objective (a named model problem that holds submissions and releases)",
       ref(m.DescribeObjective), 201, m.CreateObjective,
       (*BODY, E.PermissionDenied, E.ObjectiveAlreadyExists)),
    Op(OBJ, "get", mg.ObjectiveHandler, "getObjective", "objectives", "Describe an objective",
       ref(m.DescribeObjective), errors=(E.ObjectiveNotFound, E.AmbiguousName)),
    Op(f"{OBJ}/submissions", "get", mg.SubmissionsHandler, "listSubmissions", "submissions",
       "List an objective's submissions, oldest first", listing(m.DescribeSubmission),
       errors=(E.ObjectiveNotFound, E.AmbiguousName)),
    Op(f"{OBJ}/submissions", "post", mg.SubmissionsHandler, "createSubmission", "submissions",
       "Submit an uploaded artifact as a new immutable model version",
       ref(m.DescribeSubmission), 201, m.CreateSubmission,
       (*BODY, E.InvalidModelArtifact, E.PermissionDenied, E.ObjectiveNotFound, E.AmbiguousName,
        E.SubmissionAlreadyExists),
       "The artifact is loaded and self-tested in a separate process; its declared API and "
       "requirements are recorded. Upload the bytes first with `PUT /liveml/api/artifacts`. "
       "With `inputExample` (rows, and optionally their `inputSchema`) the input columns and "
       "their types are declared by the example, the self-test runs on its rows, and the "
       "example is recorded under `api.inputExample` for the replicas; a model that declares no "
       "inputs (no api(), no feature_names_in_) and fails on an empty frame is refused with "
       "`InvalidModelArtifact` (`reason: inputsUndeclared`) saying to give one. "
       "Names are unique per objective: the same name with the same artifact is a retry and "
       "answers 200 with the existing submission (nothing is created); the same name with "
       "another artifact is a 409 `SubmissionAlreadyExists`. Without a name, a new one is "
       "made up (`submission-N`)."),
    Op(f"{OBJ}/releases", "get", mg.ReleasesHandler, "listReleases", "releases",
       "List an objective's releases, newest first", listing(m.DescribeRelease),
       errors=(E.ObjectiveNotFound, E.AmbiguousName)),
    Op(f"{OBJ}/releases", "post", mg.ReleasesHandler, "createRelease", "releases",
       "Release a submission under a version, optionally tagging it", ref(m.DescribeRelease), 201,
       m.CreateRelease, (*BODY, E.PermissionDenied, E.ObjectiveNotFound, E.AmbiguousName,
                         E.SubmissionNotFound, E.ReleaseVersionAlreadyExists),
       "Tagging a release moves the tag off the objective's other releases; deployments that "
       "follow that tag roll over to it. A version the same submission already holds is a "
       "retry: it answers 200 with that release unchanged (its tag is not moved; use "
       "`PUT .../tag`). A version another submission holds is a 409 "
       "`ReleaseVersionAlreadyExists`."),
    Op(f"{REL}/tag", "put", mg.ReleaseTagHandler, "tagRelease", "releases",
       "Move a tag (STAGING or PRODUCTION) onto a release", ref(m.DescribeRelease),
       body=m.TagRelease, errors=(*BODY, *TAG_ERRORS),
       description="Deployments following the tag roll over to this release."),
    Op(f"{REL}/promote", "post", mg.PromoteHandler, "promoteRelease", "releases",
       "Tag a release PRODUCTION", ref(m.DescribeRelease), errors=TAG_ERRORS,
       description="Deployments following PRODUCTION roll over to this release. No body."),
    Op(f"{OBJ}/tag-history", "get", mg.TagHistoryHandler, "listTagHistory", "releases",
       "List the moves of an objective's tags, oldest first", listing(TagEvent),
       errors=(E.ObjectiveNotFound, E.AmbiguousName)),
    Op(f"{API}/artifacts", "put", mg.ArtifactsHandler, "uploadArtifact", "artifacts",
       "Upload a model file (raw bytes)", ref(ArtifactUploaded), 201,
       errors=(E.InvalidArgument, E.PermissionDenied, E.RequestEntityTooLarge),
       description="Content-addressed: uploading the same bytes again gives the same artifactId. "
                   "Needs manage scope on the token's namespace (or `default`). The body "
                   "streams to disk, up to the server's upload limit (2 GiB by default; 413 "
                   "past it)."),
    Op(f"{API}/artifacts/{{artifact}}", "get", mg.ArtifactHandler, "downloadArtifact",
       "artifacts", "Download a model file (raw bytes)",
       {"type": "string", "contentMediaType": "application/octet-stream"},
       errors=(E.PermissionDenied, E.ArtifactNotFound), media="application/octet-stream",
       description="For Kubernetes replicas that cannot read the artifact store themselves "
                   "(`--control-plane-url`): they authenticate with the replica token in "
                   "`X-LiveML-Replica-Token`. Otherwise an admin token is needed."),
    Op(f"{API}/deployments", "get", mg.DeploymentsHandler, "listDeployments", "deployments",
       "List the live deployments the caller can see", listing(m.DescribeLiveDeployment),
       query=(NAMESPACE_QUERY,)),
    Op(f"{API}/deployments", "post", mg.DeploymentsHandler, "createDeployment", "deployments",
       "Create a live deployment that serves an objective's release tagged `environment`",
       LIVE_DEPLOYMENT, 201, m.CreateLiveDeployment,
       (*BODY, *CONFIG_ERRORS, E.NoReleaseWithTag, E.PermissionDenied, E.ObjectiveNotFound, E.AmbiguousName,
        E.ApiNameAlreadyExists),
       "Replicas start in the background: poll `GET .../deployments/{deployment}` until "
       "`status.isReady`. Without `apiName`, one is made from the name (unique in the namespace)."),
    Op(DEP, "get", mg.DeploymentHandler, "getDeployment", "deployments",
       "Describe a live deployment, with its replicas' status", LIVE_DEPLOYMENT,
       errors=DEPLOYMENT_ERRORS),
    Op(DEP, "patch", mg.DeploymentHandler, "updateDeployment", "deployments",
       "Change a live deployment's name, description, API name, profiles or runtime configuration",
       LIVE_DEPLOYMENT, body=m.UpdateLiveDeployment,
       errors=(*BODY, *CONFIG_ERRORS, E.PermissionDenied, *DEPLOYMENT_ERRORS,
               E.ApiNameAlreadyExists),
       description="Absent fields stay as they are. A change of cpu, memory, gpu or threadCount "
                   "rolls the replicas; a change of the replica count only adds or removes some."),
    Op(DEP, "delete", mg.DeploymentHandler, "deleteDeployment", "deployments",
       "Delete a live deployment and stop its replicas", ref(DeploymentDeleted),
       errors=(E.PermissionDenied, *DEPLOYMENT_ERRORS)),
    Op(f"{DEP}/disable", "post", mg.DeploymentActionHandler, "disableDeployment", "deployments",
       "Disable a live deployment: its replicas stop; the configuration stays", LIVE_DEPLOYMENT,
       errors=(E.PermissionDenied, *DEPLOYMENT_ERRORS)),
    Op(f"{DEP}/enable", "post", mg.DeploymentActionHandler, "enableDeployment", "deployments",
       "Enable a disabled live deployment: its replicas start again", LIVE_DEPLOYMENT,
       errors=(E.PermissionDenied, *DEPLOYMENT_ERRORS)),
    Op(f"{DEP}/api-name", "put", mg.ApiNameHandler, "setDeploymentApiName", "deployments",
       "Change a live deployment's API name", LIVE_DEPLOYMENT, body=m.SetApiName,
       errors=(*BODY, E.PermissionDenied, *DEPLOYMENT_ERRORS, E.ApiNameAlreadyExists)),
    Op(f"{DEP}/runtime-configuration", "get", mg.RuntimeConfigurationHandler,
       "getRuntimeConfiguration", "deployments", "A live deployment's runtime configuration",
       ref(m.RuntimeConfiguration), errors=DEPLOYMENT_ERRORS),
    Op(f"{DEP}/runtime-configuration", "put", mg.RuntimeConfigurationHandler,
       "replaceRuntimeConfiguration", "deployments",
       "Replace a live deployment's runtime configuration", LIVE_DEPLOYMENT,
       body=m.RuntimeConfiguration,
       errors=(*BODY, *CONFIG_ERRORS, E.PermissionDenied, *DEPLOYMENT_ERRORS),
       description="Resources, threadCount, queueSize or env changes re-roll the replicas one "
                   "at a time with no downtime; a replica-count change adds or removes some."),
    Op(f"{DEP}/events", "get", mg.EventsHandler, "listDeploymentEvents", "deployments",
       "A live deployment's events (rollouts, scaling, replica failures), newest first",
       listing(m.DescribeEvent), errors=(*DEPLOYMENT_ERRORS, E.InvalidArgument),
       query=(LIMIT_QUERY,)),
    Op(f"{DEP}/logs", "get", mg.LogsHandler, "searchDeploymentLogs", "observability",
       "Search a live deployment's service logs, newest first", ref(m.LogPage),
       errors=(*DEPLOYMENT_ERRORS, E.InvalidArgument, InvalidLogQuery, InvalidLogColumn),
       query=(*WINDOW_QUERY, LOG_QUERY, COLUMNS_QUERY,
              LIMIT_QUERY,
              {"name": "pageToken", "in": "query", "required": False,
               "description": "nextPageToken of the previous page.", "schema": {"type": "string"}}),
       description="Query language: `field:value` on any field (dotted tags such as "
                   "`tags.node_id:NODE`; `value*` for a prefix), quoted free text, AND/OR/NOT, "
                   "parentheses. Records are kept 7 days by default."),
    Op(f"{DEP}/logs/download", "get", mg.LogsDownloadHandler, "downloadDeploymentLogs",
       "observability", "Every matching log record as a text file (tab-separated columns)",
       {"type": "string"}, media="text/plain",
       errors=(*DEPLOYMENT_ERRORS, E.InvalidArgument, InvalidLogQuery, InvalidLogColumn),
       query=(*WINDOW_QUERY, LOG_QUERY, COLUMNS_QUERY)),
    Op(f"{DEP}/history", "get", mg.HistoryHandler, "getDeploymentHistory", "observability",
       "A live deployment's captured queries (inference history), newest first",
       ref(m.HistoryPage), errors=(*DEPLOYMENT_ERRORS, E.InvalidArgument),
       query=(*WINDOW_QUERY, *HISTORY_QUERY, LIMIT_QUERY), description=HISTORY_NOTE),
    Op(f"{DEP}/history/download", "get", mg.HistoryDownloadHandler, "downloadDeploymentHistory",
       "observability", "Every matching captured query as one Parquet file",
       {"type": "string", "format": "binary"}, media="application/vnd.apache.parquet",
       errors=(*DEPLOYMENT_ERRORS, E.InvalidArgument), query=(*WINDOW_QUERY, *HISTORY_QUERY),
       description="Columns: time, deployment_rid, release, node_id, request_id, status, "
                   "latency_ms, api, request, request_bytes, request_truncated, response, "
                   "response_bytes, response_truncated, token_id (bodies as JSON text). "
                   + HISTORY_NOTE),
    Op(f"{DEP}/shadow", "post", mg.ShadowHandler, "startShadow", "deployments",
       "Mirror a sample of the live queries to another release of the objective (a shadow)",
       ref(m.DescribeShadow), status=201, body=m.CreateShadow,
       errors=(*BODY, E.PermissionDenied, *DEPLOYMENT_ERRORS, E.NoReleaseWithTag,
               E.ReleaseNotFound, E.ShadowNotPossible),
       description="The shadow runs on replicas of its own; the caller's answer never waits for "
                   "it and never changes. It replaces a running shadow, and stops by itself "
                   "after `duration`, or when the deployment is disabled or deleted. Compare the "
                   "answers with `GET .../compare`."),
    Op(f"{DEP}/shadow", "get", mg.ShadowHandler, "getShadow", "deployments",
       "A live deployment's shadow: its release, what it mirrored, its latency and errors",
       ref(m.DescribeShadow), errors=(*DEPLOYMENT_ERRORS, E.ShadowNotFound)),
    Op(f"{DEP}/shadow", "delete", mg.ShadowHandler, "stopShadow", "deployments",
       "Stop a live deployment's shadow", ref(m.DescribeShadow),
       errors=(E.PermissionDenied, *DEPLOYMENT_ERRORS, E.ShadowNotFound)),
    Op(f"{DEP}/compare", "get", mg.CompareHandler, "compareReleases", "observability",
       "The serving release against the shadow (or a replay) on the same queries",
       ref(m.DescribeComparison), errors=(*DEPLOYMENT_ERRORS, E.InvalidArgument),
       query=(*WINDOW_QUERY,
              {"name": "source", "in": "query", "required": False,
               "description": "shadow (default) or replay.",
               "schema": {"type": "string", "enum": ["shadow", "replay"]}},
              {"name": "release", "in": "query", "required": False,
               "description": "The other release's version (default: the newest pair's, with "
                              "the release that served it).", "schema": {"type": "string"}}),
       description="Pairs of one shadow (or replay) at a time: the newest one in the window, "
                   "or the one of `release`."),
    Op(f"{DEP}/replay", "post", mg.ReplayHandler, "replayHistory", "observability",
       "Run captured queries against another release and compare its answers",
       ref(m.DescribeComparison), body=m.CreateReplay,
       errors=(*BODY, E.PermissionDenied, *DEPLOYMENT_ERRORS, E.NoReleaseWithTag,
               E.ReleaseNotFound, E.NothingToReplay, E.ShadowNotPossible, E.SidePoolFailed),
       description="The queries of the window captured with their request and answer "
                   "(`captureMode` both) go to a short-lived pool of the release, never the "
                   "serving one; the report is the one `GET .../compare` gives (source replay)."),
    Op(f"{DEP}/metrics", "get", mg.MetricsHandler, "getDeploymentMetrics", "observability",
       "Host, container and request metrics of a live deployment, oldest first",
       listing(m.MetricSample), errors=(*DEPLOYMENT_ERRORS, E.InvalidArgument),
       query=(*WINDOW_QUERY,
              {"name": "kind", "in": "query", "required": False, "description": "One kind.",
               "schema": {"type": "string", "enum": ["host", "container", "requests"]}},
              {"name": "node", "in": "query", "required": False,
               "description": "Only this replica (node id).", "schema": {"type": "string"}})),
    Op(f"{API}/metrics", "get", mg.PrometheusHandler, "prometheusMetrics", "observability",
       "Inference counters and latency histograms in Prometheus text format",
       {"type": "string"}, media="text/plain", errors=(E.PermissionDenied,)),
    Op(f"{API}/profiles", "get", mg.ProfilesHandler, "listProfiles", "profiles",
       "List the replica and resource profiles", ref(m.DescribeProfiles)),
    Op(f"{API}/tokens", "post", mg.TokensHandler, "createToken", "tokens",
       "Create a bearer token (the secret is in the reply only)", ref(m.DescribeToken), 201,
       m.CreateToken, (*BODY, E.PermissionDenied),
       "A token for one namespace needs manage scope on it; one for every namespace "
       "(`namespace` null) needs admin scope, and `scope: manage` then makes an admin token. "
       "Scopes: `query` (inference, whoami, profiles), `read` (+ reading deployments, "
       "objectives, logs, events, metrics, runtime configurations with env values masked), "
       "`manage` (+ changes). With `expiresInSeconds` it stops working after that long."),
    Op(f"{API}/tokens", "get", mg.TokensHandler, "listTokens", "tokens",
       "List the tokens the caller may manage (never their secrets)", listing(m.DescribeToken),
       description="Admins see every token; a manage token those of its namespace. Revoked and "
                   "expired tokens are not listed."),
    Op(f"{API}/tokens/{{token}}", "delete", mg.TokenHandler, "revokeToken", "tokens",
       "Revoke a token: it gets 401 at once, also on the inference path", ref(m.DescribeToken),
       errors=(E.TokenNotFound, E.CannotRevokeAdminToken)),
    Op(f"{API}/openapi.json", "get", mg.OpenApiHandler, "getOpenApi", "meta",
       "This OpenAPI document", {"type": "object", "description": "An OpenAPI 3.1 document."}),
    Op(f"{API}/whoami", "get", mg.WhoAmIHandler, "whoAmI", "meta",
       "Who the credentials belong to (and until when), and the control plane's backend",
       ref(m.DescribeWhoAmI)),
    Op(INF, "post", inf.InferenceHandler, "transform", "inference",
       "Query a live deployment (v1: one tabular input, one tabular output)",
       ref(TransformResponse), body=TransformRequest, errors=INFERENCE_ERRORS,
       description=INFERENCE_NOTE + " Models with several inputs or outputs answer v1 with "
                                    "`invalidTabularFormat`: use `/v2`."),
    Op(f"{INF}/v2", "post", inf.InferenceHandler, "transformV2", "inference",
       "Query a live deployment (v2: one key per named input and output)",
       ref(TransformV2Response), body=TransformV2Request, errors=INFERENCE_ERRORS,
       description=INFERENCE_NOTE),
]

TAGS = [
    ("namespaces", "Namespaces group objectives and deployments, and scope tokens."),
    ("objectives", "An objective is a named model problem: it holds submissions and releases."),
    ("submissions", "Immutable model versions, made from uploaded artifacts."),
    ("releases", "Versioned releases of submissions, and the STAGING / PRODUCTION tags."),
    ("artifacts", "Model files, uploaded as raw bytes."),
    ("deployments", "Live deployments: replicas that serve an objective's tagged release."),
    ("profiles", "Named replica and resource profiles."),
    ("tokens", "Bearer tokens scoped to a namespace and to query, read, manage or admin rights, "
               "optionally expiring; revocable."),
    ("meta", "The API itself and the caller."),
    ("inference", "Query live deployments."),
]
DOC_MODELS: list[type[BaseModel]] = [
    m.CreateNamespace, m.DescribeNamespace, m.CreateObjective, m.DescribeObjective,
    m.CreateSubmission, m.DescribeSubmission, m.CreateRelease, m.TagRelease, m.DescribeRelease,
    m.CreateLiveDeployment, m.UpdateLiveDeployment, m.DescribeLiveDeployment, m.CreateToken,
    m.DescribeToken, NamespaceCreated, ArtifactUploaded, m.SetApiName, m.DescribeProfiles,
    m.RuntimeConfiguration, m.DescribeEvent, m.LogPage, m.HistoryPage, m.HistoryRecord,
    m.MetricSample, DeploymentDeleted, m.CreateShadow, m.DescribeShadow, m.DescribeComparison,
    m.CreateReplay,
    TagEvent,
    m.DescribeWhoAmI, TransformRequest, TransformResponse, TransformV2Request, TransformV2Response,
]


# --- building -----------------------------------------------------------------------------------
def error_classes() -> list[type[LiveMLError]]:
    """The named error classes of the platform (one per errorName), sorted by status and name."""
    found: dict[str, type[LiveMLError]] = {}
    for module in ERROR_MODULES:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, LiveMLError) and value is not LiveMLError:
                found.setdefault(value.name, value)
    return sorted(found.values(), key=lambda c: (c.status, c.name))


def error_envelope() -> dict[str, Any]:
    codes = sorted({c.code for c in error_classes()} | {LiveMLError.code})
    names = ", ".join(f"`{c.name}` ({c.status})" for c in error_classes())
    return {
        "type": "object",
        "title": "ErrorEnvelope",
        "description": "Every error, with the HTTP status of its errorName: " + names + ".",
        "required": ["errorCode", "errorName", "errorInstanceId", "parameters"],
        "properties": {
            "errorCode": {"type": "string", "enum": codes,
                          "description": "The broad class of the error."},
            "errorName": {"type": "string", "description": "The precise error, e.g. "
                          "`LiveDeploymentNotFound`; several names share one errorCode."},
            "errorInstanceId": {"type": "string",
                                "description": "A UUID for this occurrence, to find it in logs."},
            "parameters": {
                "type": "object",
                "required": ["message"],
                "additionalProperties": True,
                "description": "`message` plus details that depend on the errorName (e.g. "
                               "`field`, `namespace`, `deploymentRid`).",
                "properties": {
                    "message": {"type": "string", "description": "What went wrong and what to do."},
                    "errorType": {
                        "type": "object",
                        "description": "For `InferenceInvalidInput`: which check failed and where "
                                       "(`input`, `column`, `row`, `expected`, `actual`); for "
                                       "`InferenceFailure`: `nonFiniteOutput`.",
                        "required": ["type"],
                        "additionalProperties": True,
                        "properties": {"type": {"type": "string",
                                                "enum": INVALID_INPUT_KINDS + FAILURE_KINDS}},
                    },
                },
            },
        },
    }


def add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if name in schemas and schemas[name] != schema:
        raise ValueError(f"two different schemas are named {name!r}")
    schemas[name] = schema


def component_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in DOC_MODELS:
        schema = model.model_json_schema(by_alias=True, ref_template=REF)
        for name, sub in schema.pop("$defs", {}).items():
            add_schema(schemas, name, sub)
        add_schema(schemas, model.__name__, schema)
    add_schema(schemas, "ErrorEnvelope", error_envelope())
    return schemas


def error_responses(op: Op) -> dict[str, Any]:
    errors = (*op.errors, *COMMON_ERRORS)
    by_status: dict[int, list[str]] = {}
    for err in errors:
        names = by_status.setdefault(err.status, [])
        if err.name not in names:
            names.append(err.name)
    out = {}
    for status in sorted(by_status):
        out[str(status)] = {
            "description": ", ".join(f"`{n}`" for n in by_status[status]),
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorEnvelope")}}},
        }
    return out


def operation(op: Op) -> dict[str, Any]:
    params = [{"name": name, "in": "path", "required": True,
               "description": PATH_PARAMETERS[name], "schema": {"type": "string"}}
              for name in re.findall(r"\{([^}]+)\}", op.path)]
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "responses": {
            str(op.status): {"description": "Created" if op.status == 201 else "OK",
                             "content": {op.media: {"schema": op.response}}},
            **error_responses(op),
        },
    }
    if op.description:
        doc["description"] = op.description
    if params or op.query:
        doc["parameters"] = [*params, *op.query]
    if op.body is not None:
        required = any(f.is_required() for f in op.body.model_fields.values())
        doc["requestBody"] = {"required": required, "content": {
            "application/json": {"schema": ref(op.body)}}}
    elif op.handler is mg.ArtifactsHandler:
        doc["requestBody"] = {
            "required": True,
            "description": "The model file (joblib, pickle or cloudpickle) as raw bytes.",
            "content": {"application/octet-stream": {"schema": {
                "type": "string", "contentMediaType": "application/octet-stream"}}}}
    return doc


def check_coverage() -> None:
    """Each operation is served by its handler, and each served (route, method) is documented."""
    served: dict[tuple[int, str], list[str]] = {}
    for op in OPERATIONS:
        if not callable(getattr(op.handler, op.method, None)):
            raise ValueError(f"{op.handler.__name__} has no {op.method}() for {op.path}")
        path = re.sub(r"\{[^}]+\}", "x", op.path)
        index = next(i for i, (pattern, _) in enumerate(ROUTES)
                     if re.match("/" + pattern + "/?$", path))
        if ROUTES[index][1] is not op.handler:
            raise ValueError(f"{op.method.upper()} {op.path} is served by "
                             f"{ROUTES[index][1].__name__}, not {op.handler.__name__}")
        served.setdefault((index, op.method), []).append(op.path)
    for index, (pattern, handler) in enumerate(ROUTES):
        if handler is FallbackHandler:
            continue
        for method in METHODS:
            if callable(getattr(handler, method, None)) and (index, method) not in served:
                raise ValueError(f"{method.upper()} {pattern} ({handler.__name__}) is undocumented")


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def build() -> dict[str, Any]:
    check_coverage()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        if op.method in paths.setdefault(op.path, {}):
            raise ValueError(f"{op.method.upper()} {op.path} is listed twice")
        paths[op.path][op.method] = operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "liveml",
            "version": version(),
            "summary": "Live, scalable, monitored REST endpoints for models.",
            "description": "The management API (`/liveml/api/...`) and the inference API "
                           "(`/foundry-ml-live/api/inference/...`) of a liveml control plane. "
                           "Inside Jupyter, both are under the server's base_url. JSON bodies "
                           "use camelCase; list endpoints answer `{\"data\": [...]}`; every error "
                           "answers an `ErrorEnvelope`.",
            "license": {"name": "BSD-3-Clause", "identifier": "BSD-3-Clause"},
        },
        "servers": [
            {"url": "http://127.0.0.1:8765", "description": "`liveml serve` (default address)"},
            {"url": "{jupyter}", "description": "The liveml Jupyter server extension",
             "variables": {"jupyter": {"default": "http://localhost:8888",
                                       "description": "The Jupyter server's URL with its "
                                                      "base_url, without a trailing slash"}}},
        ],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": name, "description": text} for name, text in TAGS],
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A liveml token (`lml_...`, from `liveml token create` or the "
                               "connection file) as `Authorization: Bearer <token>`. Inside "
                               "Jupyter, the Jupyter server's own authentication also works.",
            }},
        },
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed file differs from what would be generated")
    args = parser.parse_args(argv)
    text = render(build())
    current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else None
    if args.check:
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date; run: python tools/gen_openapi.py",
                  file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(ROOT)} is up to date")
        return 0
    if current != text:
        OUTPUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    else:
        print(f"{OUTPUT.relative_to(ROOT)} is already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

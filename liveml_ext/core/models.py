"""REST resource shapes (pydantic): ``CreateX`` / ``UpdateX`` / ``DescribeX``, camelCase on the wire."""
from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .names import API_NAME, ARTIFACT_ID, NAME
from .states import DeploymentState, ReplicaState, RolloutState
from .units import parse_memory

Tag = Literal["STAGING", "PRODUCTION"]
#: a replica or resource profile's name (the operator's profiles file is held to it too)
PROFILE = API_NAME
#: an environment variable's name
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ProfileName = Annotated[str, Field(pattern=PROFILE.pattern)]
_ENV_NAME = {"pattern": ENV_KEY.pattern, "maxLength": 256}
Env = Annotated[dict[Annotated[str, Field(max_length=256, pattern=ENV_KEY.pattern)], str],
                WithJsonSchema({"type": "object", "propertyNames": _ENV_NAME,
                                "additionalProperties": {"type": "string"},
                                "description": "Environment variables of each replica"})]


def _as_before(enum: type[StrEnum] | None) -> WithJsonSchema:
    """The schema a state field had as a ``Literal`` (or a plain string, ``None``): the OpenAPI
    document and the lab extension's types (labextension/src/api.ts) stay as they are."""
    values = {"enum": [e.value for e in enum]} if enum else {}
    return WithJsonSchema({**values, "title": "State", "type": "string"})


DeploymentStateField = Annotated[DeploymentState, _as_before(DeploymentState)]
RolloutStateField = Annotated[RolloutState, _as_before(RolloutState)]
ReplicaStateField = Annotated[ReplicaState, _as_before(None)]


def tag_value(value: Any) -> Any:
    """Accept ``staging``/``Production`` etc. for a tag."""
    return value.upper() if isinstance(value, str) else value


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class CreateNamespace(Model):
    name: str = Field(pattern=API_NAME.pattern)


class SetApiName(Model):
    api_name: str = Field(pattern=API_NAME.pattern)


class DescribeNamespace(Model):
    name: str
    created_at: dt.datetime


class CreateObjective(Model):
    name: str = Field(pattern=NAME.pattern)
    namespace: str = Field("default", pattern=API_NAME.pattern)
    description: str = ""


class DescribeObjective(Model):
    rid: str
    name: str
    namespace: str
    description: str
    created_at: dt.datetime
    created_by: str


class ColumnSchema(Model):
    """A declared input column: one of the types of ``liveml_runtime.api`` (aliases accepted)."""

    name: str = Field(min_length=1)
    type: str = "any"
    required: bool = True
    precision: int | None = Field(None, ge=1, le=38, description="decimal only (default 38)")
    scale: int | None = Field(None, ge=0, le=38, description="decimal only (default 18)")
    items: str | None = Field(None, description="array only: the element type (default any)")


class CreateSubmission(Model):
    artifact_id: str = Field(pattern=ARTIFACT_ID.pattern,
                             description="The artifactId of PUT /liveml/api/artifacts (SHA-256, hex)")
    name: str = ""
    input_example: list[dict[str, Any]] | None = Field(
        None, min_length=1, max_length=1000,
        description="Example input rows (JSON objects, as in requestData): they declare the "
        "model's input columns and types (unless inputSchema does) and its self-test runs on "
        "them. Needed for a model that declares no inputs itself (no api(), no "
        "feature_names_in_). The first 100 rows are kept.")
    input_schema: list[ColumnSchema] | None = Field(
        None, min_length=1,
        description="The input columns of inputExample with their types; inferred from its rows "
        "when absent (ISO 8601 strings become date or datetime columns; a column with a null is "
        "nullable).")


class DescribeSubmission(Model):
    rid: str
    objective_rid: str
    name: str
    model_uuid: str
    artifact_sha256: str
    artifact_bytes: int
    adapter: str
    api: dict[str, Any]
    requirements: dict[str, str]
    python: str
    created_at: dt.datetime
    created_by: str


class CreateRelease(Model):
    submission: str
    version: str = Field(min_length=1, max_length=64)
    note: str = ""
    tag: Tag | None = None

    _tag = field_validator("tag", mode="before")(tag_value)


class TagRelease(Model):
    tag: Tag

    _tag = field_validator("tag", mode="before")(tag_value)


class DescribeRelease(Model):
    rid: str
    objective_rid: str
    submission_rid: str
    version: str
    note: str
    tag: Tag | None
    created_at: dt.datetime
    created_by: str


class DescribeReplicaProfile(Model):
    name: ProfileName
    min_replicas: int
    max_replicas: int
    description: str = ""


class DescribeResourceProfile(Model):
    name: ProfileName
    cpu: float
    memory: str
    gpu: int = 0
    gpu_type: str = ""
    description: str = ""


class DescribeProfiles(Model):
    replica_profiles: list[DescribeReplicaProfile]
    resource_profiles: list[DescribeResourceProfile]


#: inference history of a deployment: what each captured record keeps of a query
CaptureMode = Literal["off", "request", "response", "both"]
CAPTURE_HELP = ("Inference history: off (default), or which bodies each captured query keeps "
                "(request, response or both); failed queries (4xx, 5xx) are always captured, "
                "with their error envelope, whatever the sample")
SAMPLE_HELP = "The fraction of successful queries captured (0 to 1; failed ones always are)"
MAX_BYTES_HELP = ("A body over this many bytes is not kept: the record says it was truncated "
                  "(and gives its size)")
MAX_CAPTURE_BYTES = 50 * 1024 * 1024


class RuntimeConfiguration(Model):
    """How many replicas and what each gets; filled from the replica and resource profiles.

    ``threadCount`` model calls run at once per replica; up to ``queueSize`` more requests wait,
    and past that a replica answers 429. Autoscaling moves the replica count between
    ``minReplicas`` and ``maxReplicas``: up when the load (requests in flight per unit of
    capacity, ``threadCount`` per replica) stays above ``scaleUpLoadThreshold`` for
    ``scaleUpDelay`` seconds, down when it stays under half of it for ``scaleDownDelay`` seconds.
    ``capture*`` set the inference history (``liveml history``); they change no replica.
    """

    min_replicas: int = Field(2, ge=0, le=64)
    max_replicas: int = Field(2, ge=0, le=64)
    cpu: float = Field(1.0, gt=0)
    memory: str = "1GiB"
    gpu: int = Field(0, ge=0)
    gpu_type: str = ""
    thread_count: int = Field(1, ge=1)
    queue_size: int = Field(64, ge=0, le=100_000)
    env: Env = {}
    scale_up_load_threshold: float = Field(0.8, gt=0, le=10)
    scale_up_delay: float = Field(10.0, ge=0)
    scale_down_delay: float = Field(60.0, ge=0)
    capture: CaptureMode = Field("off", description=CAPTURE_HELP)
    capture_sample: float = Field(1.0, ge=0, le=1, description=SAMPLE_HELP)
    capture_max_bytes: int = Field(65536, ge=0, le=MAX_CAPTURE_BYTES, description=MAX_BYTES_HELP)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        parse_memory(value)
        return value


class RuntimeOverrides(Model):
    """Explicit values that take precedence over the profiles."""

    min_replicas: int | None = Field(None, ge=0, le=64)
    max_replicas: int | None = Field(None, ge=0, le=64)
    cpu: float | None = Field(None, gt=0)
    memory: str | None = None
    gpu: int | None = Field(None, ge=0)
    gpu_type: str | None = None
    thread_count: int | None = Field(None, ge=1)
    queue_size: int | None = Field(None, ge=0, le=100_000)
    env: Env | None = None
    scale_up_load_threshold: float | None = Field(None, gt=0, le=10)
    scale_up_delay: float | None = Field(None, ge=0)
    scale_down_delay: float | None = Field(None, ge=0)
    capture: CaptureMode | None = Field(None, description=CAPTURE_HELP)
    capture_sample: float | None = Field(None, ge=0, le=1, description=SAMPLE_HELP)
    capture_max_bytes: int | None = Field(None, ge=0, le=MAX_CAPTURE_BYTES,
                                          description=MAX_BYTES_HELP)


class CreateLiveDeployment(Model):
    objective: str
    name: str = Field(pattern=NAME.pattern)
    description: str = ""
    environment: Tag = "PRODUCTION"
    api_name: str | None = Field(None, pattern=API_NAME.pattern)
    replica_profile: ProfileName = "default"
    resource_profile: ProfileName = "default"
    runtime_configuration: RuntimeOverrides | None = None

    _env = field_validator("environment", mode="before")(tag_value)


class UpdateLiveDeployment(Model):
    """At least one field: an empty change is refused (it would change nothing)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: str | None = Field(None, pattern=NAME.pattern)
    description: str | None = None
    api_name: str | None = Field(None, pattern=API_NAME.pattern)
    replica_profile: ProfileName | None = None
    resource_profile: ProfileName | None = None
    runtime_configuration: RuntimeOverrides | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, dict) and not value:
            raise ValueError("the body names no field to change; give at least one of name, "
                             "description, apiName, replicaProfile, resourceProfile, "
                             "runtimeConfiguration")
        return value


class ReplicaStatus(Model):
    node_id: str
    state: ReplicaStateField
    health: str
    release_version: str
    url: str = ""
    reason: str = ""
    restarts: int = 0  # container restarts (Kubernetes); a local replica is replaced instead


class RolloutStatus(Model):
    release_version: str
    generation: int
    state: RolloutStateField
    updated_replicas: int
    desired_replicas: int
    failures: int = 0
    reason: str = ""


class DeploymentStatus(Model):
    state: DeploymentStateField
    is_ready: bool
    reason: str = ""
    ready_replicas: int = 0
    desired_replicas: int = 0
    replicas: list[ReplicaStatus] = []
    rollout: RolloutStatus | None = None
    load: float = 0.0
    shadow: DescribeShadow | None = None


class DescribeEvent(Model):
    at: dt.datetime
    kind: str
    message: str
    fields: dict[str, Any] = {}


class ReleaseRef(Model):
    rid: str
    version: str
    submission_rid: str
    model_uuid: str


class DescribeLiveDeployment(Model):
    rid: str
    name: str
    description: str
    api_name: str
    namespace: str
    objective_rid: str
    environment: Tag
    enabled: bool
    release: ReleaseRef | None
    target_release: ReleaseRef | None
    replica_profile: str
    resource_profile: str
    runtime_configuration: RuntimeConfiguration
    generation: int = Field(description="Increases with each change that needs new replicas")
    status: DeploymentStatus
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime


class CreateToken(Model):
    namespace: str | None = Field(None, pattern=API_NAME.pattern,
                                  description="The token's namespace; none: every namespace "
                                  "(admins only; manage then means admin)")
    scope: Literal["query", "read", "manage"] = Field(
        "query", description="query: inference only; read: + read deployments, objectives, "
        "logs, events, metrics (env values masked); manage: + changes")
    description: str = ""
    expires_in_seconds: int | None = Field(
        None, ge=1, le=10 * 366 * 86400,
        description="The token stops working this many seconds after its creation")


class DescribeToken(Model):
    id: str
    namespace: str | None
    scope: Literal["query", "read", "manage", "admin"]
    description: str
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    token: str | None = Field(None, description="The secret, in the answer to create only")


class DescribeWhoAmI(Model):
    name: str
    scope: str
    namespace: str | None
    backend: str
    token_id: str | None = None
    expires_at: dt.datetime | None = None


class LogPage(Model):
    data: list[dict[str, Any]] = Field(description="Records with the chosen columns, newest first")
    next_page_token: str | None = None


class MetricSample(Model):
    time: dt.datetime
    node_id: str = Field(description="A replica's node id, the host name, or * for the whole deployment")
    kind: Literal["host", "container", "requests"]
    name: str
    value: float
    unit: str
    resolution_seconds: int = Field(description="0 for a raw sample, 60 for a one-minute average")


class HistoryRecord(Model):
    """One captured query of a live deployment (its inference history)."""

    time: dt.datetime
    deployment_rid: str
    release: str = Field(description="The release version that answered (or served, for an "
                         "error of the gateway itself)")
    node_id: str = Field(description="The replica that answered, or gateway")
    request_id: str = Field(description="The caller's X-Request-Id, else one made for it (the "
                            "answer's X-Request-Id header)")
    status: int
    latency_ms: float
    api: Literal["v1", "v2"]
    request: Any = Field(None, description="The request body (JSON), when captured and within "
                         "captureMaxBytes")
    request_bytes: int
    request_truncated: bool
    response: Any = Field(None, description="The answer (JSON; the error envelope of a failed "
                          "query), when captured and within captureMaxBytes")
    response_bytes: int
    response_truncated: bool
    token_id: str | None = Field(None, description="The id of the caller's token (never the "
                                 "token)")


class HistoryPage(Model):
    data: list[HistoryRecord] = Field(description="Records, newest first")
    dropped: int = Field(description="Records this control plane dropped since it started, "
                         "because the capture queue was full")


# --- shadow traffic and comparison -----------------------------------------------------------
class CreateShadow(Model):
    """Mirror a sample of a deployment's live queries to another release of its objective."""

    release: str = Field("staging", description="staging, production, or a release version")
    sample: float = Field(1.0, ge=0.0, le=1.0, description="Fraction of live queries mirrored")
    duration: str | None = Field("1h", description="How long it runs (15m, 1h, 1d); null: until "
                                                    "stopped")
    replicas: int = Field(1, ge=1, le=8, description="Replicas of the shadow release")
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds the shadow may take per query")
    cpu: float | None = Field(None, gt=0, description="vCPU per shadow replica (default: the "
                                                       "deployment's)")
    memory: str | None = Field(None, description="Memory per shadow replica, e.g. 2GiB "
                                                 "(default: the deployment's)")
    thread_count: int | None = Field(None, ge=1, le=1024,
                                     description="Model calls at once per shadow replica "
                                                 "(default: the deployment's)")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            parse_memory(value)
        return value

    def overrides(self) -> dict[str, Any]:
        """What the shadow changes in the deployment's runtime configuration (camelCase)."""
        return {to_camel(k): v for k, v in
                self.model_dump(include={"cpu", "memory", "thread_count"}).items()
                if v is not None}


class CreateReplay(Model):
    """Run captured queries (with their answers) against another release, in a short-lived pool."""

    release: str = Field(description="staging, production, or a release version")
    since: str = Field("1h", description="The captured queries of this window (15m, 1h, 7d)")
    limit: int = Field(1000, ge=1, le=10_000, description="At most this many, the newest")
    replicas: int = Field(1, ge=1, le=8)
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds per query")


class DescribeShadow(Model):
    """A deployment's shadow: its release, how much it mirrors, and how it answers."""

    release_rid: str
    release_version: str
    serving_version: str = Field("", description="The release the live answers come from")
    sample: float
    replicas: int
    overrides: dict[str, Any] = Field({}, description="What its replicas run with other than the "
                                                      "deployment's runtime configuration")
    ready_replicas: int = 0
    state: Literal["STARTING", "ACTIVE", "FAILED"] = "STARTING"
    reason: str = ""
    started_at: dt.datetime
    until: dt.datetime | None = None
    mirrored: int = Field(0, description="Queries sent to the shadow")
    answered: int = Field(0, description="Of them, answered with a 2xx")
    errors: int = Field(0, description="Of them, failed (error status, timeout, no replica)")
    skipped: int = Field(0, description="Sampled but not sent: the shadow was busy or not ready")
    p50_ms: float | None = None
    p99_ms: float | None = None
    live_p50_ms: float | None = None
    live_p99_ms: float | None = None


class NumericDifference(Model):
    column: str
    count: int
    mean_abs: float
    p50_abs: float
    p95_abs: float
    max_abs: float
    mean_rel: float | None = Field(None, description="|b - a| / |a| where a != 0")
    p50_rel: float | None = None
    p95_rel: float | None = None
    max_rel: float | None = None


class CategoricalAgreement(Model):
    column: str
    count: int
    agreement: float = Field(description="Share of rows where both releases give the same value")
    confusion: dict[str, dict[str, int]] = Field(
        description="Counts by the first release's value, then the second's")


class ReleaseSide(Model):
    version: str
    queries: int
    errors: int
    p50_ms: float | None = None
    p99_ms: float | None = None


class DescribeComparison(Model):
    """Two releases' answers to the same queries (shadowed, or replayed from the history)."""

    deployment_rid: str
    source: Literal["shadow", "replay"]
    since: dt.datetime
    until: dt.datetime
    a: ReleaseSide = Field(description="The serving release (the live answers)")
    b: ReleaseSide = Field(description="The other release (shadow or replay)")
    queries: int = Field(description="Queries both releases answered with a 2xx")
    rows: int = Field(description="Rows of those queries compared")
    numeric: list[NumericDifference] = []
    categorical: list[CategoricalAgreement] = []
    top_differences: list[dict[str, Any]] = Field(
        [], description="The rows that differ most: their inputs and both outputs")


DeploymentStatus.model_rebuild()  # its shadow field is declared below it

"""The backend interface: start, observe and stop replicas. The controller decides; backends do.

``LocalBackend`` (replicas as local processes, under ``controller/reconciler.Controller``) is the
one ``Backend``: a started replica gets a URL once it listens, reports its own readiness over
HTTP, and a stopped one drains first. Kubernetes is not a ``Backend``: it rolls whole
deployments itself, so ``backends/kubernetes.KubernetesCluster`` serves its own controller,
``controller/kubernetes.KubeController``.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.models import RuntimeConfiguration


class NoCapacity(Exception):
    """The backend cannot place a replica now (e.g. no GPU free); the controller retries."""


def typed_runtime(value: RuntimeConfiguration | Mapping[str, Any]) -> RuntimeConfiguration:
    """A runtime configuration as the model (a camelCase mapping, as stored, is read into one)."""
    if isinstance(value, RuntimeConfiguration):
        return value
    return RuntimeConfiguration.model_validate(value)


@dataclass
class ReplicaSpec:
    """Everything a backend needs to run one replica of one release (``runtime_configuration``:
    the model; a camelCase mapping is read into one)."""

    node_id: str
    deployment_rid: str
    namespace: str
    release_rid: str
    release_version: str
    model_uuid: str
    artifact_uri: str
    runtime_configuration: RuntimeConfiguration
    generation: int = 1
    env: dict[str, str] = field(default_factory=dict)
    requirements: dict[str, str] = field(default_factory=dict)  # what the model was saved with
    input_example: dict[str, Any] | None = None  # the submission's {"columns", "rows"}, if any
    artifact_sha256: str = ""
    token: str = ""  # this replica's own credential (liveml_ext.credentials), set per node id

    def __post_init__(self) -> None:
        self.runtime_configuration = typed_runtime(self.runtime_configuration)


@dataclass
class Observation:
    """What a backend sees of a replica: running or not, where it listens, why it ended."""

    alive: bool
    url: str | None = None
    exit_reason: str = ""


class Backend(abc.ABC):
    name = "base"

    @abc.abstractmethod
    async def start(self, spec: ReplicaSpec) -> Any:
        """Start a replica and return an opaque handle."""

    @abc.abstractmethod
    def observe(self, handle: Any, fresh: bool = False) -> Observation:
        """A cheap, non-blocking look at a replica (called every controller tick).

        ``fresh`` skips any rate limit on the costlier checks (such as memory use): the
        controller asks for it once more before a replica takes traffic."""

    @abc.abstractmethod
    async def stop(self, handle: Any, grace: float = 30.0) -> None:
        """Ask the replica to drain and exit; force it after ``grace`` seconds."""

    def gpu_types(self) -> list[str]:
        """The GPUs replicas may get, one entry per device, by type."""
        return []

    def pid(self, handle: Any) -> int | None:
        """The replica's process id when it runs on this host (for container metrics)."""
        return None

    def log_path(self, handle: Any) -> str | None:
        """Where the replica's JSON log lines go, when the backend keeps them in a file."""
        return None

    async def shutdown(self) -> None:
        """Release backend resources when the control plane stops."""

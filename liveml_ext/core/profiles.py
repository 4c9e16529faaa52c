"""Named replica profiles (how many replicas) and resource profiles (what each replica gets)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import (
    GpuTypeNotAvailable,
    InvalidArgument,
    InvalidGpuCount,
    ProfileNotFound,
    ThreadCountTooHigh,
)
from .models import (
    DescribeProfiles,
    DescribeReplicaProfile,
    DescribeResourceProfile,
    RuntimeConfiguration,
)

ReplicaProfile = DescribeReplicaProfile
ResourceProfile = DescribeResourceProfile


DEFAULT_REPLICA_PROFILES = [
    ReplicaProfile(name="single", min_replicas=1, max_replicas=1,
                   description="One replica: for trials; no redundancy"),
    ReplicaProfile(name="default", min_replicas=2, max_replicas=2,
                   description="Two replicas: survives the loss of one"),
    ReplicaProfile(name="high-availability", min_replicas=3, max_replicas=3,
                   description="Three replicas"),
]
DEFAULT_RESOURCE_PROFILES = [
    ResourceProfile(name="small", cpu=0.5, memory="512MiB", description="Half a core, 512 MiB"),
    ResourceProfile(name="default", cpu=1.0, memory="1GiB", description="One core, 1 GiB"),
    ResourceProfile(name="large", cpu=2.0, memory="4GiB", description="Two cores, 4 GiB"),
]


class ProfileCatalog:
    """The profiles an operator offers and the limits a runtime configuration is checked against.

    ``max_thread_count`` caps ``threadCount``; ``gpu_types`` lists the GPUs that replicas may get
    (one entry per device, by type), as the backend reports them.
    """

    def __init__(self, replica: list[ReplicaProfile] | None = None,
                 resource: list[ResourceProfile] | None = None, max_thread_count: int = 16,
                 gpu_types: list[str] | None = None, check_gpus: bool = True) -> None:
        self.replica = {p.name: p for p in (replica or DEFAULT_REPLICA_PROFILES)}
        self.resource = {p.name: p for p in (resource or DEFAULT_RESOURCE_PROFILES)}
        self.max_thread_count = max_thread_count
        self.gpu_types = list(gpu_types or [])
        # False when a scheduler elsewhere places GPUs (Kubernetes): a pod that cannot get one
        # waits as Unschedulable, with the reason in the deployment's status
        self.check_gpus = check_gpus

    @classmethod
    def from_file(cls, path: str | Path, **limits: Any) -> ProfileCatalog:
        """Profiles from a JSON file shaped like ``GET /liveml/api/profiles``."""
        try:
            doc = DescribeProfiles.model_validate_json(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"cannot read the profiles file {path}: {exc}",
                                  field="profiles") from exc
        return cls(doc.replica_profiles or None, doc.resource_profiles or None, **limits)

    def replica_profile(self, name: str) -> ReplicaProfile:
        if name not in self.replica:
            raise ProfileNotFound(
                f"no replica profile {name!r}; choose one of {sorted(self.replica)}",
                field="replicaProfile", available=sorted(self.replica))
        return self.replica[name]

    def resource_profile(self, name: str) -> ResourceProfile:
        if name not in self.resource:
            raise ProfileNotFound(
                f"no resource profile {name!r}; choose one of {sorted(self.resource)}",
                field="resourceProfile", available=sorted(self.resource))
        return self.resource[name]

    def runtime_configuration(self, replica: str, resource: str,
                              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Profiles plus explicit overrides -> a checked runtime configuration (camelCase)."""
        rp, res = self.replica_profile(replica), self.resource_profile(resource)
        config = RuntimeConfiguration(
            min_replicas=rp.min_replicas, max_replicas=rp.max_replicas, cpu=res.cpu,
            memory=res.memory, gpu=res.gpu, gpu_type=res.gpu_type).dump()
        config.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return self.check(config)

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        """Validate a whole runtime configuration against the shape and this host's limits."""
        config = RuntimeConfiguration.model_validate(config).dump()
        if config["minReplicas"] > config["maxReplicas"]:
            raise InvalidArgument(
                f"minReplicas ({config['minReplicas']}) is greater than maxReplicas "
                f"({config['maxReplicas']})", field="minReplicas")
        if config["threadCount"] > self.max_thread_count:
            raise ThreadCountTooHigh(
                f"threadCount {config['threadCount']} is over the maximum of "
                f"{self.max_thread_count}", maxThreadCount=self.max_thread_count,
                providedThreadCount=config["threadCount"])
        gpu, kind = config["gpu"], config["gpuType"]
        if gpu and self.check_gpus:
            available = sorted(set(self.gpu_types))
            if kind and kind not in available:
                raise GpuTypeNotAvailable(
                    f"no GPU of type {kind!r} here; available: {available or 'none'}",
                    requestedGpuType=kind, availableGpuTypes=available)
            usable = sum(1 for t in self.gpu_types if not kind or t == kind)
            if gpu > usable:
                raise InvalidGpuCount(
                    f"{gpu} GPU(s) per replica asked, at most {usable} available",
                    providedGpuCount=gpu, maxGpuCount=usable)
        return config

    def describe(self) -> dict[str, Any]:
        return DescribeProfiles(replica_profiles=list(self.replica.values()),
                                resource_profiles=list(self.resource.values())).dump()

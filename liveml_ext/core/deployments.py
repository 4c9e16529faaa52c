"""Live deployments: desired state (spec, enabled) in the store, observed state from the controller."""
from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.db import Deployment, Event, Release, Store, Submission, now
from . import models as m
from .errors import ApiNameAlreadyExists, NoReleaseWithTag
from .names import new_rid
from .profiles import ProfileCatalog
from .refs import DEPLOYMENT, resolve
from .registry import MASK, Principal, Registry
from .states import DeploymentState, ReplicaState

#: Runtime fields whose change needs new replicas (a count change only adds or removes some).
REROLL_FIELDS = ("cpu", "memory", "gpu", "gpuType", "threadCount", "queueSize", "env")


@dataclass(frozen=True)
class ObservedStatus:
    """What a controller sees of one deployment beyond the store: its replicas, the rollout of
    its target, the replica count it wants now (within the deployment's bounds as they are now;
    0 when disabled) and its load. ``Deployments.describe`` copies it into the status."""

    replicas: tuple[m.ReplicaStatus, ...] = ()
    rollout: m.RolloutStatus | None = None
    desired_replicas: int = 0
    load: float = 0.0

    @property
    def ready_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.state == ReplicaState.READY)


class Observer(Protocol):
    def changed(self, rid: str, event: str) -> None: ...
    def observed(self, rid: str) -> ObservedStatus: ...


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63] or "deployment"


class Deployments:
    """Create, read, edit, disable/enable and delete live deployments."""

    def __init__(self, store: Store, registry: Registry, profiles: ProfileCatalog,
                 observer: Observer) -> None:
        self.store = store
        self.registry = registry
        self.profiles = profiles
        self.observer = observer

    # --- lookups ---------------------------------------------------------------------------
    def row(self, s: Session, ref: str, who: Principal, scope: str = "read") -> Deployment:
        """A deployment by RID, API name (``ns/api-name`` too) or name (``refs.resolve``)."""
        return resolve(s, DEPLOYMENT, ref, who, scope)

    def rid(self, ref: str, who: Principal) -> str:
        """The RID of the deployment ``ref`` names, checked for read access (no describe)."""
        with self.store.session() as s:
            return self.row(s, ref, who).rid

    def runtime_configuration(self, ref: str, who: Principal) -> dict[str, Any]:
        """The deployment's runtime configuration as ``who`` may see it (no describe)."""
        with self.store.session() as s:
            return self.visible_config(self.row(s, ref, who).runtime_configuration, who)

    @staticmethod
    def release_ref(s: Session, release_rid: str | None) -> dict[str, Any] | None:
        if not release_rid:
            return None
        rel = s.get(Release, release_rid)
        if rel is None:
            return None
        sub = s.get(Submission, rel.submission_rid)
        return {"rid": rel.rid, "version": rel.version, "submissionRid": rel.submission_rid,
                "modelUuid": sub.model_uuid if sub else ""}

    @staticmethod
    def visible_config(config: dict[str, Any], who: Principal) -> dict[str, Any]:
        """The runtime configuration as ``who`` may see it: env values masked below manage."""
        if who.has("manage") or not config.get("env"):
            return config
        return {**config, "env": {key: MASK for key in config["env"]}}

    def describe(self, s: Session, row: Deployment, who: Principal) -> dict[str, Any]:
        target = self.registry.tagged_release(s, row.objective_rid, row.environment)
        seen = self.observer.observed(row.rid)
        # state and reason as the controller recorded them; the rest as it sees them now
        status = m.DeploymentStatus(
            state=row.state if row.enabled else DeploymentState.DISABLED,
            is_ready=bool(row.enabled and seen.ready_replicas), reason=row.reason,
            ready_replicas=seen.ready_replicas, desired_replicas=seen.desired_replicas,
            replicas=list(seen.replicas), rollout=seen.rollout, load=seen.load)
        return m.DescribeLiveDeployment(
            rid=row.rid, name=row.name, description=row.description, api_name=row.api_name,
            namespace=row.namespace, objective_rid=row.objective_rid,
            environment=row.environment, enabled=row.enabled,
            release=self.release_ref(s, row.served_release_rid),
            target_release=self.release_ref(s, target.rid if target else None),
            replica_profile=row.replica_profile, resource_profile=row.resource_profile,
            runtime_configuration=self.visible_config(row.runtime_configuration, who),
            generation=row.generation,
            status=status,
            created_at=row.created_at, created_by=row.created_by,
            updated_at=row.updated_at).dump()

    def get(self, ref: str, who: Principal) -> dict[str, Any]:
        with self.store.session() as s:
            return self.describe(s, self.row(s, ref, who), who)

    def list(self, who: Principal, namespace: str | None = None) -> list[dict[str, Any]]:
        who.require_scope("read")
        with self.store.session() as s:
            q = select(Deployment).order_by(Deployment.created_at)
            if namespace:
                q = q.where(Deployment.namespace == namespace)
            return [self.describe(s, r, who) for r in s.scalars(q) if who.can_see(r.namespace)]

    def visible_rids(self, who: Principal) -> set[str] | None:
        """RIDs of the deployments ``who`` may read; None means all (an admin of every
        namespace)."""
        who.require_scope("read")
        if who.namespace is None:
            return None
        with self.store.session() as s:
            return set(s.scalars(select(Deployment.rid)
                                 .where(Deployment.namespace == who.namespace)))

    # --- changes ---------------------------------------------------------------------------
    def _check_api_name(self, s: Session, namespace: str, api_name: str, rid: str = "") -> None:
        clash = s.scalar(select(Deployment).where(Deployment.namespace == namespace,
                                                  Deployment.api_name == api_name))
        if clash is not None and clash.rid != rid:
            raise ApiNameAlreadyExists(
                f"API name {api_name!r} is taken in namespace {namespace!r} by {clash.name!r}",
                apiName=api_name, namespace=namespace, deploymentRid=clash.rid)

    def create(self, req: m.CreateLiveDeployment, who: Principal) -> dict[str, Any]:
        overrides = req.runtime_configuration.dump() if req.runtime_configuration else None
        config = self.profiles.runtime_configuration(req.replica_profile, req.resource_profile,
                                                     overrides)
        with self.store.session() as s:
            obj = self.registry.objective(s, req.objective, who)
            who.require(obj.namespace)
            release = self.registry.tagged_release(s, obj.rid, req.environment)
            if release is None:
                raise NoReleaseWithTag(
                    f"objective {obj.name!r} has no release tagged {req.environment}; release "
                    f"one first: `liveml release {obj.name} SUBMISSION --version V "
                    f"--tag {req.environment.lower()}`",
                    objective=obj.name, environment=req.environment)
            api_name = req.api_name
            if api_name is None:
                base = api_name = slug(req.name)
                n = 1
                while s.scalar(select(Deployment).where(Deployment.namespace == obj.namespace,
                                                        Deployment.api_name == api_name)):
                    n += 1
                    api_name = f"{base}-{n}"
            self._check_api_name(s, obj.namespace, api_name)
            row = Deployment(
                rid=new_rid("live-deployment"), namespace=obj.namespace, name=req.name,
                description=req.description, api_name=api_name, objective_rid=obj.rid,
                environment=req.environment, replica_profile=req.replica_profile,
                resource_profile=req.resource_profile, runtime_configuration=config,
                enabled=True, state=DeploymentState.STARTING, created_by=who.name)
            s.add(row)
        self.observer.changed(row.rid, "created")
        return self.get(row.rid, who)

    def update(self, ref: str, req: m.UpdateLiveDeployment, who: Principal) -> dict[str, Any]:
        with self.store.session() as s:
            row = self.row(s, ref, who, "manage")
            if req.name is not None:
                row.name = req.name
            if req.description is not None:
                row.description = req.description
            if req.api_name is not None and req.api_name != row.api_name:
                self._check_api_name(s, row.namespace, req.api_name, row.rid)
                row.api_name = req.api_name
            if req.model_fields_set & {"replica_profile", "resource_profile",
                                       "runtime_configuration"}:
                replica = req.replica_profile or row.replica_profile
                resource = req.resource_profile or row.resource_profile
                config = dict(row.runtime_configuration)
                # a newly chosen profile resets its fields; explicit values win over both
                if req.replica_profile is not None:
                    rp = self.profiles.replica_profile(replica)
                    config.update(minReplicas=rp.min_replicas, maxReplicas=rp.max_replicas)
                if req.resource_profile is not None:
                    res = self.profiles.resource_profile(resource)
                    config.update(cpu=res.cpu, memory=res.memory, gpu=res.gpu,
                                  gpuType=res.gpu_type)
                overrides = req.runtime_configuration.dump() if req.runtime_configuration else {}
                config.update({k: v for k, v in overrides.items() if v is not None})
                row.replica_profile, row.resource_profile = replica, resource
                self._set_config(row, config)
            row.updated_at = now()
            rid = row.rid
        self.observer.changed(rid, "updated")
        return self.get(rid, who)

    def _set_config(self, row: Deployment, config: dict[str, Any]) -> None:
        """Check and store a runtime configuration; new replicas only when a replica changes."""
        config = self.profiles.check(config)
        old = row.runtime_configuration
        if any(config.get(k) != old.get(k) for k in REROLL_FIELDS):
            row.generation += 1
        row.runtime_configuration = config

    def replace_runtime(self, ref: str, config: m.RuntimeConfiguration,
                        who: Principal) -> dict[str, Any]:
        """Replace the whole runtime configuration (the REST ``PUT``)."""
        with self.store.session() as s:
            row = self.row(s, ref, who, "manage")
            self._set_config(row, config.dump())
            row.updated_at = now()
            rid = row.rid
        self.observer.changed(rid, "updated")
        return self.get(rid, who)

    def set_enabled(self, ref: str, enabled: bool, who: Principal) -> dict[str, Any]:
        with self.store.session() as s:
            row = self.row(s, ref, who, "manage")
            row.enabled = enabled
            row.state = DeploymentState.STARTING if enabled else DeploymentState.DISABLED
            row.reason = ""
            row.updated_at = now()
            rid = row.rid
        self.observer.changed(rid, "enabled" if enabled else "disabled")
        return self.get(rid, who)

    def delete(self, ref: str, who: Principal) -> dict[str, Any]:
        with self.store.session() as s:
            row = self.row(s, ref, who, "manage")
            rid = row.rid
            s.delete(row)
        self.observer.changed(rid, "deleted")
        return {"rid": rid, "deleted": True}

    def events(self, ref: str, who: Principal, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The deployment's events, newest first."""
        with self.store.session() as s:
            row = self.row(s, ref, who)
            rows = s.scalars(select(Event).where(Event.deployment_rid == row.rid)
                             .order_by(Event.id.desc()).limit(limit))
            return [m.DescribeEvent(at=e.at, kind=e.kind, message=e.message,
                                    fields=e.fields or {}).dump() for e in rows]

    def on_tag(self, objective_rid: str) -> None:
        """A tag moved: every deployment following that objective re-checks its release."""
        with self.store.session() as s:
            rids = list(s.scalars(select(Deployment.rid)
                                  .where(Deployment.objective_rid == objective_rid)))
        for rid in rids:
            self.observer.changed(rid, "tag")


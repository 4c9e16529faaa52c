"""Shadow traffic: another release of a deployment's objective gets a sample of its live queries.

The service keeps the desired shadow in the store (``shadows``: release, sample, replica count,
per-query timeout, end time); the controller runs its replicas (a pool of their own, never the
serving one) and the gateway's ``Mirror`` sends it copies of sampled queries after the caller
has had the live answer. Stopping, the end of the duration, disabling or deleting the deployment
removes the row, and with it the shadow's replicas.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.db import Deployment, Release, Shadow, Store, now
from . import models as m
from .deployments import Deployments
from .errors import NoReleaseWithTag, ReleaseNotFound, ShadowNotFound, ShadowNotPossible
from .registry import Principal, Registry
from .timewindow import parse_duration

TAGS = {"staging": "STAGING", "production": "PRODUCTION"}


class ShadowObserver(Protocol):
    def changed(self, rid: str, event: str) -> None: ...
    def shadow_status(self, rid: str) -> m.DescribeShadow | None: ...
    def end_shadow(self, rid: str, why: str) -> None: ...


class Shadows:
    """Start, describe and stop a deployment's shadow."""

    def __init__(self, store: Store, registry: Registry, deployments: Deployments,
                 observer: ShadowObserver, supported: bool = True) -> None:
        self.store, self.registry, self.deployments = store, registry, deployments
        self.observer = observer
        self.supported = supported  # the backend can run a shadow pool

    def start(self, ref: str, req: m.CreateShadow, who: Principal) -> dict[str, Any]:
        if not self.supported:
            raise ShadowNotPossible("shadow traffic runs on the local backend only for now; "
                                    "compare a release with `liveml replay` instead")
        until = None
        if req.duration:
            span = parse_duration(req.duration)
            until = now() + span
        with self.store.session() as s:
            row = self.deployments.row(s, ref, who, "manage")
            if not row.enabled:
                raise ShadowNotPossible(f"deployment {row.name!r} is disabled: enable it first "
                                        "(`liveml enable`)", deploymentRid=row.rid)
            release = self.release(s, row, req.release)
            serving = self.serving(s, row)
            if serving is not None and release.rid == serving.rid:
                raise ShadowNotPossible(
                    f"release {release.version} is the one the deployment serves: shadow "
                    "another release (e.g. --release staging after `liveml release ... --tag "
                    "staging`)", deploymentRid=row.rid, release=release.version)
            existing = s.get(Shadow, row.rid)
            if existing is not None:
                s.delete(existing)
                s.flush()
            m.RuntimeConfiguration.model_validate({**row.runtime_configuration,
                                                   **req.overrides()})  # 400 when it cannot run
            s.add(Shadow(deployment_rid=row.rid, release_rid=release.rid,
                         release_version=release.version, sample=req.sample,
                         replicas=req.replicas, timeout=req.timeout,
                         overrides=req.overrides(), started_at=now(), until=until,
                         created_by=who.name))
            rid = row.rid
        self.observer.changed(rid, "shadow")
        return self.get(rid, who)

    def get(self, ref: str, who: Principal) -> dict[str, Any]:
        with self.store.session() as s:
            row = self.deployments.row(s, ref, who)
            shadow = s.get(Shadow, row.rid)
            if shadow is None:
                raise ShadowNotFound(f"deployment {row.name!r} has no shadow; start one with "
                                     f"`liveml shadow {row.api_name} --release staging`",
                                     deploymentRid=row.rid)
            return self.describe(s, row, shadow).dump()

    def describe(self, s: Session, row: Deployment, shadow: Shadow) -> m.DescribeShadow:
        seen = self.observer.shadow_status(row.rid)
        serving = s.get(Release, row.served_release_rid) if row.served_release_rid else None
        base = m.DescribeShadow(
            release_rid=shadow.release_rid, release_version=shadow.release_version,
            serving_version=serving.version if serving else "", sample=shadow.sample,
            replicas=shadow.replicas, overrides=dict(shadow.overrides or {}),
            started_at=shadow.started_at, until=shadow.until)
        if seen is None:
            return base
        return seen.model_copy(update={"release_rid": base.release_rid,
                                       "release_version": base.release_version,
                                       "serving_version": base.serving_version,
                                       "sample": base.sample, "replicas": base.replicas,
                                       "overrides": base.overrides,
                                       "started_at": base.started_at, "until": base.until})

    def stop(self, ref: str, who: Principal) -> dict[str, Any]:
        with self.store.session() as s:
            row = self.deployments.row(s, ref, who, "manage")
            shadow = s.get(Shadow, row.rid)
            if shadow is None:
                raise ShadowNotFound(f"deployment {row.name!r} has no shadow to stop",
                                     deploymentRid=row.rid)
            doc = self.describe(s, row, shadow).dump()
            rid = row.rid
        self.observer.end_shadow(rid, f"stopped by {who.name}")
        return doc

    # --- lookups ---------------------------------------------------------------------------
    def release(self, s: Session, row: Deployment, name: str) -> Release:
        """``staging``/``production`` (the release that tag is on) or a version."""
        tag = TAGS.get(name.strip().lower())
        if tag is not None:
            found = self.registry.tagged_release(s, row.objective_rid, tag)
            if found is None:
                raise NoReleaseWithTag(f"no release of the objective is tagged {tag}; tag one "
                                       f"with `liveml release ... --tag {tag.lower()}`", tag=tag)
            return found
        found = s.scalar(select(Release).where(Release.objective_rid == row.objective_rid,
                                               Release.version == name))
        if found is None:
            raise ReleaseNotFound(f"the objective has no release {name!r}; see `liveml releases`",
                                  version=name)
        return found

    def serving(self, s: Session, row: Deployment) -> Release | None:
        """The release the deployment serves (or is rolling out)."""
        target = self.registry.tagged_release(s, row.objective_rid, row.environment)
        if target is not None:
            return target
        return s.get(Release, row.served_release_rid) if row.served_release_rid else None


def expired(shadow: Shadow, at: dt.datetime | None = None) -> bool:
    return shadow.until is not None and (at or now()) >= shadow.until


__all__ = ["ShadowNotFound", "ShadowNotPossible", "Shadows", "expired"]

"""The model registry: namespaces, objectives, submissions (immutable versions) and releases."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..store.db import Namespace, Objective, Release, Store, Submission, TagEvent, now
from . import models as m
from .errors import (
    ObjectiveAlreadyExists,
    PermissionDenied,
    ReleaseNotFound,
    ReleaseVersionAlreadyExists,
    SubmissionAlreadyExists,
    SubmissionNotFound,
)
from .names import new_rid
from .refs import OBJECTIVE, resolve

#: Scopes, each with the rights of those before it: query = inference (and whoami, profiles);
#: read = + deployments, objectives, logs, events, metrics, runtime configurations (env values
#: masked); manage = + every change in its namespace; admin = everything.
SCOPES = ("query", "read", "manage", "admin")
ORDER = {name: n for n, name in enumerate(SCOPES)}
#: What a token below ``manage`` sees instead of an env value.
MASK = "********"


def how_to_get(scope: str) -> str:
    """Where a token of ``scope`` comes from, for a permission error's message."""
    if scope == "admin":
        return "an admin token (`liveml token show` where the server runs)"
    return f"a {scope} token: `liveml token create --namespace NS --scope {scope}`"


@dataclass(frozen=True)
class Principal:
    """Who calls: ``namespace`` None means every namespace; scope admin > manage > read > query.

    ``token_id`` and ``expires_at`` are set for a liveml token."""

    name: str
    scope: str = "admin"
    namespace: str | None = None
    token_id: str | None = None
    expires_at: dt.datetime | None = None

    def can_see(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace

    def has(self, scope: str) -> bool:
        return ORDER[self.scope] >= ORDER[scope]

    def require(self, namespace: str, scope: str = "manage") -> None:
        if not self.can_see(namespace) or not self.has(scope):
            raise PermissionDenied(
                f"this token may not {scope} namespace {namespace!r}; it takes "
                f"{how_to_get(scope)}", namespace=namespace, requiredScope=scope)

    def require_scope(self, scope: str) -> None:
        """Check the scope alone (lists, which then show only the token's namespaces)."""
        if not self.has(scope):
            raise PermissionDenied(f"a {self.scope} token may not do this; it takes "
                                   f"{how_to_get(scope)}", requiredScope=scope)


def next_version(version: str, taken: set[str]) -> str:
    """A free version after ``version``: its last number raised (``1.1`` → ``1.2``), else
    ``-2``, ``-3``, ... appended."""
    match = re.fullmatch(r"(.*?)(\d+)", version)
    for n in range(1, len(taken) + 2):
        candidate = f"{match[1]}{int(match[2]) + n}" if match else f"{version}-{n + 1}"
        if candidate not in taken:
            return candidate
    return f"{version}-new"


def submission_api(info: dict[str, Any]) -> dict[str, Any]:
    """The API recorded with a submission: the inspected one, plus its input example (columns and
    rows, under ``inputExample``) when it was submitted with one; replicas load with that."""
    api = dict(info["api"])
    if info.get("inputExample"):
        api["inputExample"] = info["inputExample"]
    return api


class Registry:
    """Objectives, submissions and releases. ``on_tag(objective_rid)`` runs after a tag moves."""

    def __init__(self, store: Store, on_tag: Callable[[str], None] = lambda rid: None) -> None:
        self.store = store
        self.on_tag = on_tag
        self.ensure_namespace("default")

    # --- namespaces ------------------------------------------------------------------------
    def ensure_namespace(self, name: str, s: Session | None = None) -> None:
        if s is None:
            with self.store.session() as s:
                return self.ensure_namespace(name, s)
        if s.get(Namespace, name) is None:
            s.add(Namespace(name=name))
            s.flush()

    def list_namespaces(self, who: Principal) -> list[dict[str, Any]]:
        who.require_scope("read")
        with self.store.session() as s:
            rows = s.scalars(select(Namespace).order_by(Namespace.name)).all()
            return [m.DescribeNamespace(name=r.name, created_at=r.created_at).dump()
                    for r in rows if who.can_see(r.name)]

    # --- objectives ------------------------------------------------------------------------
    def create_objective(self, req: m.CreateObjective, who: Principal) -> dict[str, Any]:
        who.require(req.namespace)
        with self.store.session() as s:
            self.ensure_namespace(req.namespace, s)
            if s.scalar(select(Objective).where(Objective.namespace == req.namespace,
                                                Objective.name == req.name)):
                raise ObjectiveAlreadyExists(
                    f"namespace {req.namespace!r} already has an objective named {req.name!r}",
                    name=req.name, namespace=req.namespace)
            row = Objective(rid=new_rid("objective"), namespace=req.namespace, name=req.name,
                            description=req.description, created_by=who.name)
            s.add(row)
        return self.describe_objective(row)

    @staticmethod
    def describe_objective(row: Objective) -> dict[str, Any]:
        return m.DescribeObjective(rid=row.rid, name=row.name, namespace=row.namespace,
                                   description=row.description, created_at=row.created_at,
                                   created_by=row.created_by).dump()

    def list_objectives(self, who: Principal, namespace: str | None = None) -> list[dict[str, Any]]:
        who.require_scope("read")
        with self.store.session() as s:
            q = select(Objective).order_by(Objective.namespace, Objective.name)
            if namespace:
                q = q.where(Objective.namespace == namespace)
            return [self.describe_objective(r) for r in s.scalars(q) if who.can_see(r.namespace)]

    def objective(self, s: Session, ref: str, who: Principal, scope: str = "read") -> Objective:
        """An objective by RID, ``namespace/name`` or a visible name (``refs.resolve``)."""
        return resolve(s, OBJECTIVE, ref, who, scope)

    def get_objective(self, ref: str, who: Principal) -> dict[str, Any]:
        with self.store.session() as s:
            return self.describe_objective(self.objective(s, ref, who))

    # --- submissions -----------------------------------------------------------------------
    # Names are unique per objective. The store has no unique constraint on them (a home from an
    # earlier version may hold two submissions of one name, and must still start): the registry
    # checks, and a name that is there twice means its newest submission.
    def existing_submission(self, objective_ref: str, name: str, sha256: str,
                            who: Principal) -> dict[str, Any] | None:
        """The submission a retry of ``(name, artifact)`` means, or None when it is new.

        Same name and same artifact: the existing submission (an idempotent retry). Same name,
        another artifact: ``SubmissionAlreadyExists``. No name: always new (None)."""
        with self.store.session() as s:
            obj = self.objective(s, objective_ref, who)
            who.require(obj.namespace)
            row = self._same_name(s, obj, name, sha256)
            return self.describe_submission(row) if row is not None else None

    def _same_name(self, s: Session, obj: Objective, name: str, sha256: str) -> Submission | None:
        if not name:
            return None
        row = s.scalars(select(Submission).where(Submission.objective_rid == obj.rid,
                                                 Submission.name == name)
                        .order_by(Submission.created_at.desc())).first()
        if row is None or row.artifact_sha256 == sha256:
            return row
        taken = set(s.scalars(select(Submission.name)
                              .where(Submission.objective_rid == obj.rid)))
        other = next(f"{name}-{n}" for n in range(2, len(taken) + 3) if f"{name}-{n}" not in taken)
        raise SubmissionAlreadyExists(
            f"objective {obj.name!r} already has a submission {name!r} ({row.rid}, submitted "
            f"{row.created_at:%Y-%m-%d %H:%M:%S} UTC) with another artifact; submit under "
            f"another name, e.g. {other!r}, or release the existing one "
            f"(`liveml release {obj.name} {name} --version VERSION`)",
            name=name, submissionRid=row.rid, createdAt=row.created_at.isoformat(),
            artifactId=row.artifact_sha256, suggestedName=other)

    def add_submission(self, objective_ref: str, name: str, artifact_uri: str, sha256: str,
                       size: int, info: dict[str, Any], who: Principal) -> dict[str, Any]:
        """A new submission; with the name and artifact of an existing one, that one."""
        with self.store.session() as s:
            obj = self.objective(s, objective_ref, who)
            who.require(obj.namespace)
            same = self._same_name(s, obj, name, sha256)
            if same is not None:
                return self.describe_submission(same)
            if not name:
                taken = set(s.scalars(select(Submission.name)
                                      .where(Submission.objective_rid == obj.rid)))
                count = len(taken) + 1
                while f"submission-{count}" in taken:
                    count += 1
                name = f"submission-{count}"
            row = Submission(
                rid=new_rid("submission"), objective_rid=obj.rid,
                name=name, model_uuid=str(uuid.uuid4()),
                artifact_uri=artifact_uri, artifact_sha256=sha256, artifact_bytes=size,
                adapter=info.get("adapter", ""), api=submission_api(info),
                requirements=info.get("requirements", {}), python=info.get("python", ""),
                created_by=who.name)
            s.add(row)
        return self.describe_submission(row)

    @staticmethod
    def describe_submission(row: Submission) -> dict[str, Any]:
        return m.DescribeSubmission(
            rid=row.rid, objective_rid=row.objective_rid, name=row.name,
            model_uuid=row.model_uuid, artifact_sha256=row.artifact_sha256,
            artifact_bytes=row.artifact_bytes, adapter=row.adapter, api=row.api,
            requirements=row.requirements, python=row.python, created_at=row.created_at,
            created_by=row.created_by).dump()

    def list_submissions(self, objective_ref: str, who: Principal) -> list[dict[str, Any]]:
        with self.store.session() as s:
            obj = self.objective(s, objective_ref, who)
            rows = s.scalars(select(Submission).where(Submission.objective_rid == obj.rid)
                             .order_by(Submission.created_at))
            return [self.describe_submission(r) for r in rows]

    def submission(self, s: Session, obj: Objective, ref: str) -> Submission:
        q = select(Submission).where(Submission.objective_rid == obj.rid)
        q = q.where(Submission.rid == ref) if ref.startswith("ri.") else \
            q.where(Submission.name == ref)
        row = s.scalars(q.order_by(Submission.created_at.desc())).first()
        if row is None:
            raise SubmissionNotFound(
                f"objective {obj.name!r} has no submission {ref!r}", submission=ref)
        return row

    # --- releases --------------------------------------------------------------------------
    def existing_release(self, objective_ref: str, req: m.CreateRelease,
                         who: Principal) -> dict[str, Any] | None:
        """The release a retry of ``req`` means, or None when its version is new.

        The version of the same submission: that release, unchanged (a retry does not move its
        tag, even when ``req.tag`` differs; move tags with ``PUT .../tag`` or promote). The
        version of another submission: ``ReleaseVersionAlreadyExists``."""
        with self.store.session() as s:
            obj = self.objective(s, objective_ref, who)
            who.require(obj.namespace)
            row = self._same_version(s, obj, self.submission(s, obj, req.submission), req.version)
            return self.describe_release(row) if row is not None else None

    def _same_version(self, s: Session, obj: Objective, sub: Submission,
                      version: str) -> Release | None:
        row = s.scalar(select(Release).where(Release.objective_rid == obj.rid,
                                             Release.version == version))
        if row is None or row.submission_rid == sub.rid:
            return row
        holder = s.get(Submission, row.submission_rid)
        holder_name = holder.name if holder is not None else row.submission_rid
        raise ReleaseVersionAlreadyExists(
            f"objective {obj.name!r} already has release {version!r}, of submission "
            f"{holder_name!r} ({row.submission_rid}); release {sub.name!r} under a new version, "
            f"e.g. {next_version(version, self._versions(s, obj))!r} (`liveml releases "
            f"{obj.name}` lists them)",
            version=version, submission=holder_name, submissionRid=row.submission_rid)

    @staticmethod
    def _versions(s: Session, obj: Objective) -> set[str]:
        return set(s.scalars(select(Release.version).where(Release.objective_rid == obj.rid)))

    def create_release(self, objective_ref: str, req: m.CreateRelease,
                       who: Principal) -> dict[str, Any]:
        """A new release (moving ``req.tag`` onto it); for a version this submission already
        holds, that release unchanged: its tag is NOT moved."""
        with self.store.session() as s:
            obj = self.objective(s, objective_ref, who)
            who.require(obj.namespace)
            sub = self.submission(s, obj, req.submission)
            same = self._same_version(s, obj, sub, req.version)
            if same is not None:
                return self.describe_release(same)
            seq = (s.scalar(select(func.max(Release.seq))
                            .where(Release.objective_rid == obj.rid)) or 0) + 1
            row = Release(rid=new_rid("release"), objective_rid=obj.rid, submission_rid=sub.rid,
                          version=req.version, note=req.note, seq=seq, created_by=who.name)
            s.add(row)
            try:
                s.flush()
            except IntegrityError as exc:
                raise ReleaseVersionAlreadyExists(f"release {req.version!r} exists") from exc
            if req.tag:
                self._move_tag(s, row, req.tag, who)
        if req.tag:
            self.on_tag(row.objective_rid)
        return self.describe_release(row)

    def tag_release(self, objective_ref: str, version: str, tag: str,
                    who: Principal) -> dict[str, Any]:
        with self.store.session() as s:
            obj = self.objective(s, objective_ref, who)
            who.require(obj.namespace)
            row = s.scalar(select(Release).where(Release.objective_rid == obj.rid,
                                                 Release.version == version))
            if row is None:
                raise ReleaseNotFound(f"objective {obj.name!r} has no release {version!r}",
                                      version=version)
            self._move_tag(s, row, tag, who)
        self.on_tag(row.objective_rid)
        return self.describe_release(row)

    @staticmethod
    def _move_tag(s: Session, row: Release, tag: str, who: Principal) -> None:
        for other in s.scalars(select(Release).where(Release.objective_rid == row.objective_rid,
                                                     Release.tag == tag)):
            other.tag = None
        row.tag = tag
        s.add(TagEvent(objective_rid=row.objective_rid, release_rid=row.rid, tag=tag,
                       at=now(), by=who.name))

    @staticmethod
    def describe_release(row: Release) -> dict[str, Any]:
        return m.DescribeRelease(
            rid=row.rid, objective_rid=row.objective_rid, submission_rid=row.submission_rid,
            version=row.version, note=row.note, tag=row.tag, created_at=row.created_at,
            created_by=row.created_by).dump()

    def list_releases(self, objective_ref: str, who: Principal) -> list[dict[str, Any]]:
        with self.store.session() as s:
            obj = self.objective(s, objective_ref, who)
            rows = s.scalars(select(Release).where(Release.objective_rid == obj.rid)
                             .order_by(Release.seq.desc()))
            return [self.describe_release(r) for r in rows]

    def tag_history(self, objective_ref: str, who: Principal) -> list[dict[str, Any]]:
        with self.store.session() as s:
            obj = self.objective(s, objective_ref, who)
            rows = s.execute(select(TagEvent, Release.version)
                             .join(Release, Release.rid == TagEvent.release_rid)
                             .where(TagEvent.objective_rid == obj.rid).order_by(TagEvent.id))
            return [{"releaseRid": e.release_rid, "version": v, "tag": e.tag,
                     "at": e.at.isoformat(), "by": e.by} for e, v in rows]

    @staticmethod
    def tagged_release(s: Session, objective_rid: str, tag: str) -> Release | None:
        return s.scalars(select(Release).where(Release.objective_rid == objective_rid,
                                               Release.tag == tag)
                         .order_by(Release.seq.desc())).first()

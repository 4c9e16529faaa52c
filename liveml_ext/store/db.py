"""Persistence with SQLAlchemy: SQLite in the liveml home by default, PostgreSQL by URL.

The store holds desired state (the registry, deployment specs, enabled flags) and the last
observed status of each deployment; the controller reconciles the two.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator):
    """Timezone-aware in and out, also on SQLite (which drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UtcDateTime, dict: JSON}


class Namespace(Base):
    __tablename__ = "namespaces"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=now)


class Objective(Base):
    __tablename__ = "objectives"
    __table_args__ = (UniqueConstraint("namespace", "name"),)
    rid: Mapped[str] = mapped_column(String(96), primary_key=True)
    namespace: Mapped[str] = mapped_column(ForeignKey("namespaces.name"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    created_by: Mapped[str] = mapped_column(default="")


class Submission(Base):
    __tablename__ = "submissions"
    rid: Mapped[str] = mapped_column(String(96), primary_key=True)
    objective_rid: Mapped[str] = mapped_column(ForeignKey("objectives.rid"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    model_uuid: Mapped[str] = mapped_column(String(36))
    artifact_uri: Mapped[str] = mapped_column()
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_bytes: Mapped[int] = mapped_column(Integer)
    adapter: Mapped[str] = mapped_column(default="")
    api: Mapped[dict] = mapped_column()
    requirements: Mapped[dict] = mapped_column()
    python: Mapped[str] = mapped_column(default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    created_by: Mapped[str] = mapped_column(default="")


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("objective_rid", "version"),)
    rid: Mapped[str] = mapped_column(String(96), primary_key=True)
    objective_rid: Mapped[str] = mapped_column(ForeignKey("objectives.rid"), index=True)
    submission_rid: Mapped[str] = mapped_column(ForeignKey("submissions.rid"))
    version: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(default="")
    tag: Mapped[str | None] = mapped_column(String(16), nullable=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    created_by: Mapped[str] = mapped_column(default="")


class TagEvent(Base):
    """Every tag move, so the full release history is kept."""

    __tablename__ = "tag_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    objective_rid: Mapped[str] = mapped_column(ForeignKey("objectives.rid"), index=True)
    release_rid: Mapped[str] = mapped_column(ForeignKey("releases.rid"))
    tag: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(default=now)
    by: Mapped[str] = mapped_column(default="")


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("namespace", "api_name"),)
    rid: Mapped[str] = mapped_column(String(96), primary_key=True)
    namespace: Mapped[str] = mapped_column(ForeignKey("namespaces.name"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(default="")
    api_name: Mapped[str] = mapped_column(String(64))
    objective_rid: Mapped[str] = mapped_column(ForeignKey("objectives.rid"))
    environment: Mapped[str] = mapped_column(String(16))
    replica_profile: Mapped[str] = mapped_column(String(64))
    resource_profile: Mapped[str] = mapped_column(String(64))
    runtime_configuration: Mapped[dict] = mapped_column()
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    served_release_rid: Mapped[str | None] = mapped_column(nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="STARTING")
    reason: Mapped[str] = mapped_column(default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    created_by: Mapped[str] = mapped_column(default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=now)


class Event(Base):
    """Something that happened to a deployment: rollouts, scaling, replica failures, states."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_rid: Mapped[str] = mapped_column(String(96), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=now)
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column()
    fields: Mapped[dict] = mapped_column(default=dict)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    namespace: Mapped[str | None] = mapped_column(nullable=True)
    scope: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Store:
    """An engine and a session factory; ``with store.session() as s:`` commits on success."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn: Any, _record: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        Base.metadata.create_all(self.engine)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._factory() as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()

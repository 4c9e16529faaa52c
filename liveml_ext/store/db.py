"""Persistence with SQLAlchemy: SQLite in the liveml home by default, PostgreSQL by URL.

The store holds desired state (the registry, deployment specs, enabled flags) and the last
observed status of each deployment; the controller reconciles the two.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
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
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ..core.errors import InvalidArgument
from ..core.states import DeploymentState
from .home import private_file

log = logging.getLogger("liveml")


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
    state: Mapped[str] = mapped_column(String(16),
                                       default=DeploymentState.STARTING.value)
    reason: Mapped[str] = mapped_column(default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    created_by: Mapped[str] = mapped_column(default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=now)


class Shadow(Base):
    """A deployment's shadow: another release that gets a sample of its live queries (mirrored,
    the answers compared, never returned). Gone when stopped, expired, disabled or deleted."""

    __tablename__ = "shadows"
    deployment_rid: Mapped[str] = mapped_column(String(96), primary_key=True)
    release_rid: Mapped[str] = mapped_column(String(96))
    release_version: Mapped[str] = mapped_column(String(128))
    sample: Mapped[float] = mapped_column(default=1.0)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    timeout: Mapped[float] = mapped_column(default=30.0)
    overrides: Mapped[dict] = mapped_column(default=dict)  # camelCase runtime configuration
    started_at: Mapped[dt.datetime] = mapped_column(default=now)
    until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str] = mapped_column(default="")


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


class Lease(Base):
    """Who runs the controller on a shared database (PostgreSQL): one holder until
    ``expires_at``, renewed every few seconds, taken over by a standby when it lapses."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255), default="")
    home: Mapped[str] = mapped_column(default="")
    url: Mapped[str] = mapped_column(default="")
    expires_at: Mapped[dt.datetime] = mapped_column()
    renewed_at: Mapped[dt.datetime] = mapped_column(default=now)


def check_values(session: Session, _context: Any, _instances: Any) -> None:
    """Before a flush: refuse a text PostgreSQL cannot store (a NUL character) or that is longer
    than its column, with a 400 naming the field, on every database alike (SQLite would
    silently keep what PostgreSQL refuses with a 500)."""
    for obj in [*session.new, *session.dirty]:
        for column in obj.__table__.columns:
            value = getattr(obj, column.key, None)
            if not isinstance(value, str):
                continue
            head, *rest = column.key.split("_")
            name = head + "".join(part.title() for part in rest)
            if "\x00" in value:
                raise InvalidArgument(f"{name} contains a NUL character (\\u0000): remove it",
                                      field=name)
            length = getattr(column.type, "length", None)
            if length and len(value) > length:
                raise InvalidArgument(f"{name} is {len(value)} characters long; at most "
                                      f"{length} fit: shorten it", field=name)


class Store:
    """An engine and a session factory; ``with store.session() as s:`` commits on success."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        database = make_url(url).database if url.startswith("sqlite") else None
        if database and database != ":memory:":
            for path in (database, f"{database}-wal", f"{database}-shm"):
                if path == database or os.path.exists(path):  # SQLite gives -wal/-shm its mode
                    private_file(path)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn: Any, _record: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        Base.metadata.create_all(self.engine)
        self.migrate()
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._factory, "before_flush", check_values)

    def migrate(self) -> list[str]:
        """Additive migration after ``create_all`` (which makes missing tables only): add the
        nullable columns a table of an older home lacks. The ``table.column`` names added."""
        existing = inspect(self.engine)
        added = []
        with self.engine.begin() as conn:
            for table in Base.metadata.sorted_tables:
                if not existing.has_table(table.name):
                    continue
                have = {c["name"] for c in existing.get_columns(table.name)}
                for column in table.columns:
                    if column.name in have:
                        continue
                    if not column.nullable:
                        log.warning("liveml: table %s lacks the required column %s: it cannot "
                                    "be added in place", table.name, column.name)
                        continue
                    kind = column.type.compile(dialect=self.engine.dialect)
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" '
                                      f"{kind}"))
                    added.append(f"{table.name}.{column.name}")
        if added:
            log.warning("liveml: added the columns %s to the database", ", ".join(added))
        return added

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._factory() as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()

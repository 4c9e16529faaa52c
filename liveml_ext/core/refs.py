"""One way to resolve a reference to an objective or a live deployment.

A reference is a RID, ``NAMESPACE/NAME`` or a name unique among what the caller may see; each
kind looks its name up in its columns in order (a deployment: API name, then name). None
visible is the kind's 404, several are a 409 ``AmbiguousName``, and the one found is checked
for the scope asked."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from ..store.db import Deployment, Objective
from .errors import AmbiguousName, LiveDeploymentNotFound, LiveMLError, ObjectiveNotFound
from .names import rid_prefix

if TYPE_CHECKING:  # registry imports this module
    from .registry import Principal

R = TypeVar("R")
T = TypeVar("T", Objective, Deployment)


def pick_one(rows: Sequence[R], ref: str, who: Principal, namespace_of: Callable[[R], str],
             not_found: LiveMLError, kind: str, scope: str = "read") -> R:
    """The one row ``ref`` names among those ``who`` may see: ``not_found`` when none,
    ``AmbiguousName`` (409) when several, and the ``scope`` check on the one found."""
    rows = [r for r in rows if who.can_see(namespace_of(r))]
    if not rows:
        raise not_found
    if len(rows) > 1:
        spaces = sorted({namespace_of(r) for r in rows})
        raise AmbiguousName(
            f"{len(rows)} {kind}s match {ref!r} (namespaces {', '.join(spaces)}); name one "
            "by its RID or as NAMESPACE/NAME", **{kind: ref}, namespaces=spaces,
            rids=[getattr(r, "rid", "") for r in rows])
    who.require(namespace_of(rows[0]), scope)
    return rows[0]


@dataclass(frozen=True)
class Kind(Generic[T]):
    """A kind of resource a reference can name."""

    table: type[T]
    name: str  # in messages and the AmbiguousName parameters
    rid_kind: str  # as in its RIDs
    columns: tuple[InstrumentedAttribute[str], ...]  # where a name is looked up, in order
    not_found: Callable[[str], LiveMLError]


OBJECTIVE: Kind[Objective] = Kind(
    Objective, "objective", "objective", (Objective.name,),
    lambda ref: ObjectiveNotFound(f"no objective {ref!r}; list them with `liveml objective "
                                  "list`", objective=ref))
DEPLOYMENT: Kind[Deployment] = Kind(
    Deployment, "deployment", "live-deployment", (Deployment.api_name, Deployment.name),
    lambda ref: LiveDeploymentNotFound(f"no live deployment {ref!r}; list them with "
                                       "`liveml ls`", deployment=ref))


def resolve(s: Session, kind: Kind[T], ref: str, who: Principal, scope: str = "read") -> T:
    """The ``kind`` row that ``ref`` names for ``who`` (see the module docstring)."""
    if ref.startswith(rid_prefix(kind.rid_kind)):
        found = s.get(kind.table, ref)
        rows = [found] if found is not None else []
    else:
        ns, _, key = ref.rpartition("/")
        rows = []
        for column in kind.columns:
            q = select(kind.table).where(column == key)
            if ns:
                q = q.where(kind.table.namespace == ns)
            rows = [r for r in s.scalars(q) if who.can_see(r.namespace)]
            if rows:
                break
    return pick_one(rows, ref, who, lambda r: r.namespace, kind.not_found(ref), kind.name, scope)

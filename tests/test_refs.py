"""One resolver for a reference to an objective or a live deployment (``core/refs.py``):
the same rules for both kinds, on a real SQLite store, and no describe to find a RID."""
from __future__ import annotations

from typing import Any

import pytest

from liveml_ext.core import refs
from liveml_ext.core.deployments import Deployments
from liveml_ext.core.errors import LiveMLError
from liveml_ext.core.names import new_rid
from liveml_ext.core.profiles import ProfileCatalog
from liveml_ext.core.registry import Principal, Registry
from liveml_ext.store.db import Deployment, Objective, Store

ADMIN = Principal("admin")


class Watcher:
    """An observer that records what the deployments service asks of the controller."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def changed(self, rid: str, event: str) -> None:
        pass

    def observed(self, rid: str) -> dict[str, Any]:
        self.asked.append(rid)
        return {"replicas": [], "rollout": None, "autoscaling": None}


@pytest.fixture
def world(tmp_path):
    """Objectives and deployments named ``twin`` in namespaces a and b, ``solo`` in a only, and
    an objective and a deployment whose *name* looks like a RID."""
    store = Store(f"sqlite:///{tmp_path / 'liveml.db'}")
    registry = Registry(store)
    rids: dict[str, str] = {}
    config = ProfileCatalog().runtime_configuration("default", "default", {"env": {"K": "v"}})
    with store.session() as s:
        for ns in ("a", "b"):
            registry.ensure_namespace(ns, s)
        s.flush()
        for ns, name in (("a", "twin"), ("b", "twin"), ("a", "solo"), ("a", "ri.lookalike")):
            obj = Objective(rid=new_rid("objective"), namespace=ns, name=name)
            dep = Deployment(rid=new_rid("live-deployment"), namespace=ns, name=name,
                             api_name=f"api-{ns}-{len(rids)}", objective_rid=obj.rid,
                             environment="PRODUCTION", replica_profile="default",
                             resource_profile="default", runtime_configuration=config)
            s.add(obj)
            s.flush()
            s.add(dep)
            rids[f"objective {ns}/{name}"], rids[f"deployment {ns}/{name}"] = obj.rid, dep.rid
    watcher = Watcher()
    yield store, registry, Deployments(store, registry, ProfileCatalog(), watcher), watcher, rids
    store.close()


def failure(fn: Any) -> tuple[int, str, dict[str, Any]]:
    with pytest.raises(LiveMLError) as err:
        fn()
    return err.value.status, err.value.name, err.value.parameters


@pytest.mark.parametrize("kind", ["objective", "deployment"])
def test_both_kinds_resolve_by_one_rule(world, kind):
    store, registry, deployments, _, rids = world
    spec = refs.OBJECTIVE if kind == "objective" else refs.DEPLOYMENT
    via_service = (registry.objective if kind == "objective" else deployments.row)
    with store.session() as s:
        def rid(ref: str, who: Principal = ADMIN, scope: str = "read") -> str:
            row = refs.resolve(s, spec, ref, who, scope)
            assert via_service(s, ref, who, scope).rid == row.rid  # the services use it too
            return row.rid

        assert rid(rids[f"{kind} b/twin"]) == rids[f"{kind} b/twin"]
        assert rid("a/twin") == rids[f"{kind} a/twin"]
        assert rid("solo") == rids[f"{kind} a/solo"]
        # a name that looks like a RID is still a name, for both kinds
        assert rid("ri.lookalike") == rids[f"{kind} a/ri.lookalike"]
        # a name unique among what the caller may see
        assert rid("twin", Principal("t", "read", "b")) == rids[f"{kind} b/twin"]
        status, name, params = failure(lambda: rid("twin"))
        assert (status, name) == (409, "AmbiguousName")
        assert params["namespaces"] == ["a", "b"] and params[spec.name] == "twin"
        assert sorted(params["rids"]) == sorted([rids[f"{kind} a/twin"], rids[f"{kind} b/twin"]])
        not_found = "ObjectiveNotFound" if kind == "objective" else "LiveDeploymentNotFound"
        for ref in ("nope", "b/solo", f"{refs.rid_prefix(spec.rid_kind)}0000", "ri.nope"):
            assert failure(lambda ref=ref: rid(ref))[:2] == (404, not_found)
        # out of sight is not found; in sight but below the scope is denied
        assert failure(lambda: rid("solo", Principal("t", "admin", "b")))[:2] == (404, not_found)
        assert failure(lambda: rid("a/solo", Principal("t", "read", "a"), "manage"))[:2] == \
            (403, "PermissionDenied")


def test_deployment_api_name_wins_over_a_name(world):
    store, _, deployments, _, rids = world
    with store.session() as s:
        other = s.get(Deployment, rids["deployment b/twin"])
        assert other is not None
        other.name = "api-a-0"  # the API name of a/twin
    assert deployments.rid("api-a-0", ADMIN) == rids["deployment a/twin"]
    assert deployments.rid("b/api-a-0", ADMIN) == rids["deployment b/twin"]


def test_rid_and_runtime_configuration_need_no_describe(world):
    _, _, deployments, watcher, rids = world
    reader = Principal("t", "read", "a")
    assert deployments.rid("a/solo", reader) == rids["deployment a/solo"]
    masked = deployments.runtime_configuration("a/solo", reader)
    assert masked["env"] == {"K": "********"} and masked["minReplicas"] == 2
    assert deployments.runtime_configuration("a/solo", ADMIN)["env"] == {"K": "v"}
    assert watcher.asked == []  # the controller was not asked for the observed state


def test_handlers_resolve_a_reference_without_a_describe():
    """The logs, metrics and runtime-configuration handlers call the resolver."""
    import inspect

    from liveml_ext.handlers import management

    source = inspect.getsource(management)
    assert "deployments.get(ref" not in source.replace("deployments.get(ref, self.principal))",
                                                       "")
    for reader in (management._log_args, management.MetricsHandler.get, management._history,
                   management.CompareHandler.get):
        assert "deployments.rid(ref" in inspect.getsource(reader), reader
    assert "deployments.runtime_configuration(ref" in source

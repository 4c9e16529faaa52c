"""The Kubernetes controller's own logic without a cluster: reading pod logs once, mapping
Kubernetes events to deployments, artifact URLs for pods. (The controller against a simulated
cluster with real replicas: tests/test_kubernetes_backend.py.)"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from kube_fake import FakeKube

from liveml_ext.artifacts import ArtifactStore
from liveml_ext.backends.kubernetes import KubernetesCluster
from liveml_ext.controller.kube_logs import LogTail, _ts_key, split_log
from liveml_ext.controller.kubernetes import KubeController, KubeSettings
from liveml_ext.core.registry import Registry
from liveml_ext.gateway.pool import Gateway
from liveml_ext.observability.logstore import LogStore
from liveml_ext.observability.shipper import LogShipper
from liveml_ext.store.db import Store


@pytest.fixture
def controller(tmp_path: Path, fake: FakeKube) -> Iterator[KubeController]:
    api = fake.api_client()
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    logs = LogStore(tmp_path / "logs.db")
    shipper = LogShipper(logs, tmp_path / "offsets.json")
    artifacts = ArtifactStore(str(tmp_path / "artifacts"), tmp_path / "cache")
    ctl = KubeController(store, Registry(store), artifacts, KubernetesCluster("liveml", api), Gateway(),
                         KubeSettings(), shipper=shipper, state_file=tmp_path / "tails.json")
    yield ctl
    api.close()
    logs.close()
    store.close()


def test_kubernetes_log_timestamps_compare_in_time_order() -> None:
    # the kubelet trims trailing zeros: plain string order would put .5 after .123456789
    assert _ts_key("2026-11-26T12:00:00.5Z") > _ts_key("2026-11-26T12:00:00.123456789Z")
    assert _ts_key("2026-11-26T12:00:01Z") > _ts_key("2026-11-26T12:00:00.999Z")
    assert split_log("2026-11-26T12:00:00.5Z {\"a\": 1}\nnot a log line\n") == [
        ("2026-11-26T12:00:00.500000000Z", b'{"a": 1}')]


def test_kubernetes_log_tail_ships_each_line_once(controller: KubeController) -> None:
    tail, tags = LogTail(), {"node_id": "pod-a", "deployment_rid": "ri.x"}
    first = "2026-11-26T12:00:00.1Z one\n2026-11-26T12:00:00.2Z two\n"
    controller.pod_logs.ship(tail, first, tags)
    # the next read overlaps (sinceSeconds is coarse), including a new line at the same instant
    controller.pod_logs.ship(tail, first + "2026-11-26T12:00:00.2Z two-bis\n2026-11-26T12:00:01Z three\n",
                             tags)
    controller.shipper.flush()
    found = controller.shipper.store.search("ri.x", start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                                            end=dt.datetime(2027, 1, 1, tzinfo=dt.UTC), limit=10)
    assert sorted(r["message"] for r in found["data"]) == ["one", "three", "two", "two-bis"]
    assert {r["node_id"] for r in found["data"]} == {"pod-a"}
    # a line that is not JSON is dated by the kubelet, not by when it was read
    assert min(r["time"] for r in found["data"]).startswith("2026-11-26T12:00:00.1")


def test_kubernetes_terminating_pod_log_is_followed_to_its_end(controller: KubeController,
                                                               fake: FakeKube) -> None:
    """A running pod is read by polls; a terminating one is followed once, to the end of the
    stream, and not read again; a follow that fails gives the pod back to polling."""
    path = "/api/v1/namespaces/liveml/pods/{}/log"
    pod = {"phase": "Running", "restarts": 0, "terminating": False, "release_version": "1.0"}
    fake.route("GET", path.format("p-a"), 200, "2026-11-26T12:00:00Z Replica ready\n")
    controller.pod_logs.tail("ri.x", [{**pod, "node_id": "p-a"}])
    assert "follow" not in fake.made("GET", path.format("p-a"))[-1].query

    fake.route("GET", path.format("p-a"), 200, iter([b"2026-11-26T12:00:00Z Replica ready\n",
                                                     b"2026-11-26T12:00:02Z Draining\n",
                                                     b"2026-11-26T12:00:03Z Replica stopped\n"]))
    controller.pod_logs.tail("ri.x", [{**pod, "node_id": "p-a", "terminating": True}])
    wait_for(lambda: controller.pod_logs.following.get("p-a") is False, what="the followed stream's end")
    assert fake.made("GET", path.format("p-a"))[-1].query["follow"] == ["true"]
    reads = len(fake.made("GET", path.format("p-a")))
    controller.pod_logs.tail("ri.x", [{**pod, "node_id": "p-a", "terminating": True}])
    assert len(fake.made("GET", path.format("p-a"))) == reads  # followed to its end already
    controller.shipper.flush()
    found = controller.shipper.store.search("ri.x", start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                                            end=dt.datetime(2027, 1, 1, tzinfo=dt.UTC), limit=10)
    assert sorted(r["message"] for r in found["data"]) == ["Draining", "Replica ready",
                                                           "Replica stopped"]

    fake.route("GET", path.format("p-b"), 500, {"kind": "Status", "code": 500})
    controller.pod_logs.tail("ri.x", [{**pod, "node_id": "p-b", "terminating": True}])
    wait_for(lambda: "p-b" not in controller.pod_logs.following, what="the failed follow given up")
    fake.route("GET", path.format("p-b"), 200, "2026-11-26T12:00:04Z Replica stopped\n")
    controller.pod_logs.following["p-b"] = True  # as if still followed: polls leave it alone
    controller.pod_logs.tail("ri.x", [{**pod, "node_id": "p-b"}])
    assert fake.made("GET", path.format("p-b"))[-1].query["follow"] == ["true"]
    del controller.pod_logs.following["p-b"]
    controller.pod_logs.tail("ri.x", [{**pod, "node_id": "p-b"}])
    assert "follow" not in fake.made("GET", path.format("p-b"))[-1].query


def test_kubernetes_events_map_to_deployments_warnings_become_events(controller: KubeController) -> None:
    rt = controller._runtime("ri.dep", "default")
    rt.name = "liveml-house-1a2b3c4d"
    controller.relay.since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    recorded: list[tuple[str, str, str]] = []
    controller.event = lambda rid, kind, message, level="INFO", **f: recorded.append((rid, level, message))  # type: ignore[method-assign]
    events = [
        {"metadata": {"uid": "u1"}, "type": "Warning", "reason": "FailedScheduling", "count": 1,
         "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
         "lastTimestamp": "2026-11-26T12:00:00Z",
         "involvedObject": {"kind": "Pod", "name": "liveml-house-1a2b3c4d-5d9f8c7b6-abcde"}},
        {"metadata": {"uid": "u2"}, "type": "Warning", "reason": "BackOff", "count": 1,
         "message": "Back-off restarting failed container", "lastTimestamp": "2026-11-26T12:00:00Z",
         "involvedObject": {"kind": "Pod", "name": "someone-elses-pod-5d9f8c7b6-abcde"}},
        {"metadata": {"uid": "u3"}, "type": "Normal", "reason": "Scheduled", "count": 1,
         "message": "assigned", "lastTimestamp": "2026-11-26T12:00:00Z",
         "involvedObject": {"kind": "Pod", "name": "liveml-house-1a2b3c4d-5d9f8c7b6-abcde"}},
    ]
    controller.relay.dispatch(events)
    assert recorded == [("ri.dep", "WARNING", "Kubernetes FailedScheduling on Pod/liveml-house-1a2b3c4d-"
                         "5d9f8c7b6-abcde: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")]
    controller.relay.dispatch(events)  # seen: nothing new
    assert len(recorded) == 1
    events[0]["count"] = 3  # repeated: reported again with its count
    controller.relay.dispatch(events)
    assert len(recorded) == 2 and recorded[1][2].endswith("(x3)")
    assert controller.shipper.pending[-1]["tags"]["node_id"] == "liveml-house-1a2b3c4d-5d9f8c7b6-abcde"


def test_kubernetes_events_from_before_the_start_are_not_replayed(controller: KubeController) -> None:
    rt = controller._runtime("ri.dep", "default")
    rt.name = "liveml-house-1a2b3c4d"
    recorded: list[str] = []
    controller.event = lambda rid, kind, message, level="INFO", **f: recorded.append(message)  # type: ignore[method-assign]
    controller.relay.dispatch([{"metadata": {"uid": "old"}, "type": "Warning", "reason": "BackOff",
                                "count": 1, "lastTimestamp": "2020-01-01T00:00:00Z",
                                "involvedObject": {"kind": "Pod", "name": "liveml-house-1a2b3c4d-x-y"}}])
    assert recorded == []


def test_kubernetes_artifact_url_for_pods(controller: KubeController) -> None:
    sha = "ab" * 32
    assert controller.artifact_url(sha).endswith(f"/{sha[:2]}/{sha}")  # local disk: its path
    controller.settings.control_plane_url = "http://liveml.liveml.svc:8765/"
    assert controller.artifact_url(sha) == f"http://liveml.liveml.svc:8765/liveml/api/artifacts/{sha}"


def test_kubernetes_gateway_routes_to_ready_pods_or_the_service(controller: KubeController) -> None:
    rt = controller._runtime("ri.dep", "default")
    rt.name = "liveml-house-1a2b3c4d"
    pool = controller.gateway.pools["ri.dep"]
    pods = [{"node_id": "p1", "url": "http://10.0.0.1:8080"}, {"node_id": "p2", "url": "http://10.0.0.2:8080"}]
    controller._route(pool, rt, pods, threads=2)
    assert [(m.node_id, m.url) for m in pool.members] == [("p1", "http://10.0.0.1:8080"),
                                                          ("p2", "http://10.0.0.2:8080")]
    assert [m.depth for m in pool.members] == [2, 2]  # calls a pod takes: its threadCount
    controller._route(pool, rt, pods[1:], threads=2)  # p1 went away (or is terminating)
    assert [m.node_id for m in pool.members] == ["p2"]
    controller.settings.gateway_route = "service"
    controller._route(pool, rt, pods, threads=2)
    assert [(m.node_id, m.url, m.depth) for m in pool.members] == [
        ("liveml-house-1a2b3c4d", "http://liveml-house-1a2b3c4d.liveml.svc:80", 4)]
    controller._route(pool, rt, pods[1:], threads=2)  # the Service has one pod behind it now
    assert [m.depth for m in pool.members] == [2]
    controller._route(pool, rt, [], threads=2)  # no ready pod: nothing to send queries to
    assert pool.members == []


def test_kubernetes_rollout_status_belongs_to_what_was_read(controller: KubeController) -> None:
    """Just after an apply the last reading is of the previous spec: its COMPLETE rollout must not
    be reported as the new generation's (``liveml update --wait`` would return at once)."""
    from test_kubernetes_contract import spec

    rt = controller._runtime("ri.dep", "default")
    rt.name = "liveml-house-1a2b3c4d"
    rt.summary = {"rollout": {"state": "COMPLETE", "updated": 2, "desired": 2, "reason": ""},
                  "pods": [], "desired": 2}
    rt.summary_spec = spec(generation=3)
    rt.applied = spec(generation=4)  # applied, not read back yet
    rollout = controller.observed("ri.dep").rollout
    assert rollout is not None and (rollout.generation, rollout.state) == (3, "COMPLETE")


def test_kubernetes_load_of_an_autoscaled_deployment_is_its_hpa_utilization(
        controller: KubeController) -> None:
    from test_kubernetes_contract import spec

    rt = controller._runtime("ri.dep", "default")
    rt.name = "liveml-house-1a2b3c4d"
    rt.summary = {"rollout": None, "pods": [], "desired": 3}
    rt.applied = spec()  # minReplicas 2 < maxReplicas 4: an HPA scales it
    controller.autoscalers = {rt.name: {"current": 3, "desired": 3, "utilization": 0.93}}
    seen = controller.observed("ri.dep")
    assert (seen.desired_replicas, seen.load) == (3, 0.93)
    rt.applied = spec(runtime={"minReplicas": 2, "maxReplicas": 2})  # a fixed count: no load
    assert controller.observed("ri.dep").load == 0.0


def test_kubernetes_a_pass_that_read_before_a_disable_does_not_route_again(
        controller: KubeController, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user disables the deployment while a pass reads its pods: that pass must not put the
    ready pods back into the gateway pool (queries would get answers after the 'disabled')."""
    import asyncio
    import threading
    import time
    from types import SimpleNamespace

    from test_kubernetes_contract import spec

    from liveml_ext.controller.base import DISABLED_REASON

    rid = "ri.dep"
    rt = controller._runtime(rid, "default")
    row = SimpleNamespace(enabled=True, environment="production", api_name="house_prices",
                          namespace="default", state="ACTIVE", reason="",
                          served_release_rid="ri.release")
    release = SimpleNamespace(rid="ri.release", version="1.2.0")
    monkeypatch.setattr(controller, "desired", lambda rt: (row, release, object()))
    monkeypatch.setattr(controller, "spec", lambda row, release, sub: spec())
    rt.applied, rt.applied_at = spec(), time.monotonic()  # nothing to apply: straight to reading
    pod = {"node_id": "p1", "url": "http://10.0.0.1:8080", "ready": True, "terminating": False,
           "current": True, "release_rid": "ri.release", "phase": "Running", "restarts": 0,
           "reason": "", "message": "", "release_version": "1.2.0", "generation": "3"}
    summary = {"state": "ACTIVE", "reason": "", "pods": [pod], "urls": [pod["url"]], "ready": 1,
               "desired": 1, "rollout": None, "exists": True}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def observe(name: str) -> dict:  # on the executor thread, as the real read is
            done = threading.Event()

            def disable() -> None:
                controller.changed(rid, "disabled")
                done.set()

            loop.call_soon_threadsafe(disable)
            assert done.wait(10)
            return summary

        monkeypatch.setattr(controller.cluster, "observe", observe)
        await controller._sync_once(rt)

    asyncio.run(scenario())
    pool = controller.gateway.pools[rid]
    assert pool.members == [] and pool.unavailable_reason == DISABLED_REASON
    assert rt.observed_at < 0  # the next pass reads again, with the deployment disabled


def test_kubernetes_spark_submissions_get_the_spark_image(controller: KubeController) -> None:
    """The Deployment of a release whose submission needs pyspark names the Spark variant of the
    replica image; any other release, the plain one."""
    from liveml_ext.store.db import Deployment, Release, Submission

    row = Deployment(rid="ri.foundry-ml-live.main.live-deployment.x", api_name="churn",
                     namespace="default", runtime_configuration={"minReplicas": 1, "maxReplicas": 1},
                     generation=1, enabled=True, replica_profile="default",
                     resource_profile="default")
    release = Release(rid="ri.models.main.release.x", version="1.0")

    def image(requirements: dict[str, str], adapter: str = "") -> str:
        sub = Submission(model_uuid="u", artifact_sha256="0" * 64, requirements=requirements,
                         adapter=adapter)
        spec = controller.spec(row, release, sub)
        assert spec.spark == spec.image.endswith("-spark")  # the JVM sizes its heap by the limit
        return spec.image

    assert image({"scikit-learn": "1.5.0"}) == KubeSettings().replica_image
    assert image({"pyspark": "4.3.0", "pandas": "3.1.1"}) == KubeSettings().spark_replica_image
    assert image({}, adapter="SparkModelAdapter") == KubeSettings().spark_replica_image

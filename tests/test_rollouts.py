"""Runtime configuration, rollouts, self-healing, capacity and autoscaling with real replicas."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import requests
from conftest import Loops, query, start_server, wait_for
from model_fixtures import EnvEcho, Slow, save

from liveml_ext.backends.base import NoCapacity, ReplicaSpec, typed_runtime
from liveml_ext.backends.local import LocalBackend, LocalReplica
from liveml_ext.client import LiveMLClientError

X = [{"x": 1.0}]


@pytest.fixture(autouse=True)
def _delete_afterwards(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test's deployments go when it ends: replicas left running would load the machine under
    the later tests' timings."""
    yield
    if "server" in request.fixturenames:
        c = request.getfixturevalue("server").client
        for doc in c.deployments():
            c.delete(doc["rid"])


def deploy_model(server, model, tmp_path, name: str, **runtime) -> str:
    c = server.client
    path = save(model, tmp_path / f"{name}.pkl")
    c.create_objective(name)
    c.submit(name, path, name="m")
    c.release(name, "m", "1.0", tag="production")
    doc = c.deploy(name, name=name, runtime=runtime or None)
    return c.wait(doc["rid"], timeout=120)["rid"]


def pids(server, rid: str) -> set[int]:
    """PIDs of the ready replicas, asked of the model itself (EnvEcho answers its pid)."""
    seen = set()
    for _ in range(12):
        resp = query(server, rid, X)
        seen.add(resp.json()["responseData"][0]["pid"])
    return seen


def nodes(doc: dict) -> set[str]:
    return {r["nodeId"] for r in doc["status"]["replicas"] if r["state"] == "READY"}


def envelope(err: pytest.ExceptionInfo, status: int, name: str) -> dict:
    assert err.value.status == status, err.value.envelope
    assert err.value.name == name, err.value.envelope
    return err.value.parameters


def test_profiles_listed_by_cli_and_rest(server):
    doc = server.client.profiles()
    assert {p["name"] for p in doc["replicaProfiles"]} >= {"single", "default"}
    default = next(p for p in doc["resourceProfiles"] if p["name"] == "default")
    assert default["cpu"] == 1.0 and default["memory"] == "1GiB"
    out = subprocess.run([sys.executable, "-m", "liveml_ext.cli", "profiles"], env=server.env(),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "replica profiles" in out and "high-availability" in out and "512MiB" in out


def test_operator_profiles_file(tmp_path, house_model):
    profiles = {"replicaProfiles": [{"name": "trio", "minReplicas": 3, "maxReplicas": 3}],
                "resourceProfiles": [{"name": "tiny", "cpu": 0.25, "memory": "300MiB"},
                                     {"name": "gpu-a100", "cpu": 4, "memory": "8GiB", "gpu": 1,
                                      "gpuType": "A100"}]}
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(profiles))
    server = start_server(tmp_path / "home", args=("--profiles", str(path)))
    try:
        c = server.client
        doc = c.profiles()
        assert [p["name"] for p in doc["replicaProfiles"]] == ["trio"]
        assert [p["name"] for p in doc["resourceProfiles"]] == ["tiny", "gpu-a100"]
        c.create_objective("o")
        c.submit("o", house_model, name="m")
        c.release("o", "m", "1", tag="production")
        with pytest.raises(LiveMLClientError) as err:
            c.deploy("o", name="g", replica_profile="trio", resource_profile="gpu-a100")
        params = envelope(err, 400, "GpuTypeNotAvailable")
        assert params["requestedGpuType"] == "A100" and params["availableGpuTypes"] == []
        with pytest.raises(LiveMLClientError) as err:
            c.deploy("o", name="g", replica_profile="default")
        assert envelope(err, 400, "ProfileNotFound")["available"] == ["trio"]
        doc = c.deploy("o", name="t", replica_profile="trio", resource_profile="tiny")
        assert doc["runtimeConfiguration"]["minReplicas"] == 3
        assert doc["runtimeConfiguration"]["memory"] == "300MiB"
    finally:
        server.stop()


def test_invalid_runtime_configurations_are_refused(server, house_model, tmp_path):
    c = server.client
    rid = deploy_model(server, EnvEcho(), tmp_path, "validate", minReplicas=1, maxReplicas=1)
    before = c.deployment(rid)
    cases = [
        ({"threadCount": 99}, "ThreadCountTooHigh", {"maxThreadCount": 16, "providedThreadCount": 99}),
        ({"gpu": 2}, "InvalidGpuCount", {"providedGpuCount": 2, "maxGpuCount": 0}),
        ({"gpu": 1, "gpuType": "H100"}, "GpuTypeNotAvailable",
         {"requestedGpuType": "H100", "availableGpuTypes": []}),
        ({"minReplicas": 3, "maxReplicas": 2}, "InvalidArgument", {"field": "minReplicas"}),
        ({"memory": "lots"}, "InvalidArgument", {"field": "memory"}),
        ({"cpu": -1}, "InvalidArgument", {"field": "runtimeConfiguration.cpu"}),
        ({"cpu": "fast"}, "InvalidArgument", {"field": "runtimeConfiguration.cpu"}),
    ]
    for runtime, name, expected in cases:
        with pytest.raises(LiveMLClientError) as err:
            c.update(rid, runtimeConfiguration=runtime)
        params = envelope(err, 400, name)
        assert {k: params.get(k) for k in expected} == expected, (runtime, params)
    # the whole-configuration PUT checks the same way
    with pytest.raises(LiveMLClientError) as err:
        c.replace_runtime(rid, {**before["runtimeConfiguration"], "threadCount": 17})
    envelope(err, 400, "ThreadCountTooHigh")
    with pytest.raises(LiveMLClientError) as err:
        c.replace_runtime(rid, {**before["runtimeConfiguration"], "memory": "-1GiB"})
    assert envelope(err, 400, "InvalidArgument")["field"] == "memory"
    # nothing changed, nothing restarted
    after = c.deployment(rid)
    assert after["runtimeConfiguration"] == before["runtimeConfiguration"]
    assert after["generation"] == before["generation"] and nodes(after) == nodes(before)
    bad = subprocess.run([sys.executable, "-m", "liveml_ext.cli", "update", rid,
                          "--thread-count", "99"], env=server.env(), capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "ThreadCountTooHigh" in bad.stderr


def test_reroll_under_load_drops_nothing_and_keeps_capacity(server, tmp_path):
    c = server.client
    rid = deploy_model(server, EnvEcho(), tmp_path, "reroll")
    first = c.deployment(rid)
    old_nodes = nodes(first)
    assert len(old_nodes) == 2
    ready_seen: list[int] = []
    with Loops(server, rid, rows=X, field="greeting") as loops:
        time.sleep(0.5)
        cli = subprocess.Popen(
            [sys.executable, "-m", "liveml_ext.cli", "update", rid, "--env", "GREETING=hello",
             "--thread-count", "2", "--wait"], env=server.env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        while cli.poll() is None:
            ready_seen.append(c.deployment(rid)["status"]["readyReplicas"])
            time.sleep(0.05)
        out, err = cli.communicate()
        assert cli.returncode == 0, out + err
        after = loops.since(loops.mark(in_flight=2))
    assert loops.failures() == [], loops.failures()[:5]
    greetings = [value for _, value in loops.results]
    assert greetings[0] == "" and "hello" in greetings
    assert after and set(after) == {"hello"}, "old replicas answered after the roll"
    assert min(ready_seen) >= 2, f"fewer ready replicas than wanted during the roll: {ready_seen}"
    doc = c.deployment(rid)
    assert doc["runtimeConfiguration"]["threadCount"] == 2
    assert doc["runtimeConfiguration"]["env"] == {"GREETING": "hello"}
    assert doc["generation"] == first["generation"] + 1
    assert doc["status"]["rollout"]["state"] == "COMPLETE"
    assert not (nodes(doc) & old_nodes), "every replica was replaced"
    events = [e["message"] for e in c.events(rid)]
    assert any("Rolling out" in m for m in events)
    # cores are not pinned by default
    assert all(os.sched_getaffinity(pid) == os.sched_getaffinity(0) for pid in pids(server, rid))


def test_cpu_pinning_when_asked(tmp_path):
    server = start_server(tmp_path / "home", args=("--pin-cpus",))
    try:
        rid = deploy_model(server, EnvEcho(), tmp_path, "pinned")
        cores = [os.sched_getaffinity(pid) for pid in pids(server, rid)]
        if len(os.sched_getaffinity(0)) > 1:  # cpu 1.0: one core each, spread
            assert all(len(c) == 1 for c in cores) and len(set.union(*cores)) == len(cores)
    finally:
        server.stop()


def test_replica_count_change_only_adds_or_removes(server, tmp_path):
    c = server.client
    rid = deploy_model(server, EnvEcho(), tmp_path, "count")
    start = nodes(c.deployment(rid))

    doc = c.update(rid, runtimeConfiguration={"minReplicas": 3, "maxReplicas": 3})
    assert doc["generation"] == c.deployment(rid)["generation"]
    doc = c.wait(rid, timeout=60)
    assert len(nodes(doc)) == 3 and start < nodes(doc)
    three = nodes(doc)
    doc = c.wait(c.update(rid, runtimeConfiguration={"minReplicas": 1, "maxReplicas": 1})["rid"])
    # --wait means settled: the surplus is out of the pool, not just asked to go
    assert len(doc["status"]["replicas"]) == 1 and doc["status"]["readyReplicas"] == 1
    assert nodes(doc) < three


def assert_only_held_queries_failed(loops: Loops, gone: set[str]) -> None:
    """The only failed queries are those a killed replica held (one per loop at most): a 502
    ``ReplicaFailed`` naming it, never resent elsewhere (tests/test_poison.py)."""
    failed = [json.loads(text) for _, text in loops.failures()]
    assert len(failed) <= len(loops.loops), failed
    assert all(f["errorName"] == "ReplicaFailed" and f["parameters"]["nodeId"] in gone
               for f in failed) and [s for s, _ in loops.failures()] == [502] * len(failed)


def test_killed_replica_is_replaced_failing_only_the_queries_it_held(server, tmp_path):
    """The queries the killed replica was handling (one per loop at most) get a 502 naming it,
    and are not resent (they might be what killed it: tests/test_poison.py); no other fails."""
    c = server.client
    rid = deploy_model(server, EnvEcho(), tmp_path, "heal")
    before = nodes(c.deployment(rid))
    with Loops(server, rid, rows=X, field="pid") as loops:
        time.sleep(0.5)
        victim = next(iter(pids(server, rid)))
        killed = loops.mark()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(nodes(c.deployment(rid)) - before) == 1, timeout=60,
                 what="a replacement replica")
        after = loops.since(killed, more=5)
    assert_only_held_queries_failed(loops, before - nodes(c.deployment(rid)))
    assert victim not in after
    doc = c.deployment(rid)
    assert doc["status"]["state"] == "ACTIVE" and doc["status"]["readyReplicas"] == 2
    assert any("crashed" in e["message"] for e in c.events(rid))


def test_crash_loop_backs_off_and_shows_in_the_state(server, tmp_path):
    c = server.client
    rid = deploy_model(server, EnvEcho(), tmp_path, "loop", minReplicas=1, maxReplicas=1)
    for _ in range(2):
        wait_for(lambda: c.deployment(rid)["status"]["readyReplicas"] == 1, timeout=60,
                 what="a ready replica")
        os.kill(next(iter(pids(server, rid))), signal.SIGKILL)
        wait_for(lambda: c.deployment(rid)["status"]["readyReplicas"] == 0, timeout=30,
                 what="the crash to be seen")

    def in_the_back_off() -> tuple[dict, requests.Response] | None:
        """The second crash backs off 4 s: state and a query, both within it."""
        resp = query(server, rid, X)
        doc = c.deployment(rid)
        return (doc, resp) if doc["status"]["state"] in ("FAILED", "DEGRADED") else None

    doc, resp = wait_for(in_the_back_off, timeout=10, what="the crash loop state")
    assert "crash loop" in doc["status"]["reason"]
    assert resp.status_code == 503 and "crash loop" in resp.json()["parameters"]["message"]
    # after the back-off it restarts by itself
    wait_for(lambda: c.deployment(rid)["status"]["state"] == "ACTIVE", timeout=60,
             what="the restart after the back-off")


def test_failed_rollouts_keep_the_old_replicas_serving(server, tmp_path):
    c = server.client
    rid = deploy_model(server, EnvEcho(), tmp_path, "failing")
    old = nodes(c.deployment(rid))
    with Loops(server, rid, rows=X, field="greeting") as loops:
        # a model that raises at load
        c.update(rid, runtimeConfiguration={"env": {"FAIL_AT_LOAD": "1"}})
        doc = wait_for(lambda: (d := c.deployment(rid))["status"]["state"] == "DEGRADED" and d,
                       timeout=90, what="DEGRADED")
        assert "FAIL_AT_LOAD is set" in doc["status"]["reason"]
        assert doc["status"]["rollout"]["state"] == "FAILED"
        assert nodes(doc) == old and doc["status"]["isReady"]
        # while the rollout is stopped, a lost replica of the serving version is replaced
        os.kill(next(iter(pids(server, rid))), signal.SIGKILL)
        doc = wait_for(lambda: (d := c.deployment(rid)) and len(nodes(d)) == 2 and
                       nodes(d) != old and d, timeout=60, what="the serving version healed")
        assert doc["status"]["state"] == "DEGRADED" and "FAIL_AT_LOAD is set" in \
            doc["status"]["reason"]
        assert loops.results and loops.results[-1][1] == ""  # the old configuration answers
        killed = old - nodes(doc)
        old = nodes(doc)
        # out of memory
        c.update(rid, runtimeConfiguration={"env": {}, "memory": "60MiB"})
        doc = wait_for(lambda: (d := c.deployment(rid))["status"]["state"] == "DEGRADED" and
                       "out of memory" in d["status"]["reason"] and d, timeout=90, what="OOM")
        assert nodes(doc) == old, [e["message"] for e in c.events(rid, limit=200)]
        with pytest.raises(LiveMLClientError) as err:
            c.wait(rid, timeout=5)
        assert err.value.name == "DeploymentNotReady"
        # a good configuration recovers
        doc = c.update(rid, runtimeConfiguration={"memory": "1GiB", "env": {"GREETING": "ok"}})
        doc = c.wait(rid, timeout=90)
        after = loops.since(loops.mark())
    assert_only_held_queries_failed(loops, killed)
    assert doc["status"]["state"] == "ACTIVE" and not (nodes(doc) & old)
    assert set(after) == {"ok"}
    events = " | ".join(e["message"] for e in c.events(rid, limit=200))
    assert "Rollout of release 1.0 stopped" in events and "out of memory" in events


def test_rollout_stops_at_its_deadline(tmp_path):
    server = start_server(tmp_path / "home", args=("--progress-deadline", "3"))
    try:
        c = server.client
        rid = deploy_model(server, EnvEcho(), tmp_path, "deadline", minReplicas=1, maxReplicas=1)
        old = nodes(c.deployment(rid))
        c.update(rid, runtimeConfiguration={"env": {"SLOW_LOAD": "60"}})
        doc = wait_for(lambda: (d := c.deployment(rid))["status"]["state"] == "DEGRADED" and d,
                       timeout=30, what="the deadline")
        assert "did not finish within 3s" in doc["status"]["reason"]
        assert nodes(doc) == old and len(doc["status"]["replicas"]) == 1  # the slow one stopped
        resp = query(server, rid, X)
        assert resp.status_code == 200
    finally:
        server.stop()


def test_thread_count_caps_concurrency_then_429(server, tmp_path):
    rid = deploy_model(server, Slow(0.5), tmp_path, "capacity", minReplicas=1, maxReplicas=1,
                       threadCount=1, queueSize=1)
    answers: list[requests.Response] = []
    together = threading.Barrier(5)  # all five in flight at once, however slow threads start

    def one() -> None:
        together.wait(30)
        answers.append(query(server, rid, X))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 2 and 429 in codes, codes
    refused = next(a for a in answers if a.status_code == 429).json()
    assert refused["errorName"] == "TooManyRequests" and "threadCount" in \
        refused["parameters"]["message"]


def test_autoscaling_follows_load(server, tmp_path):
    c = server.client
    rid = deploy_model(server, Slow(0.2), tmp_path, "autoscale", minReplicas=1, maxReplicas=2,
                       threadCount=1, queueSize=64, scaleUpLoadThreshold=0.5, scaleUpDelay=0.5,
                       scaleDownDelay=1.0)
    assert c.deployment(rid)["status"]["desiredReplicas"] == 1
    with Loops(server, rid, count=4, rows=X, field="x") as loops:
        wait_for(lambda: c.deployment(rid)["status"]["readyReplicas"] == 2, timeout=60,
                 what="a scale-up")
    assert loops.failures() == []
    wait_for(lambda: c.deployment(rid)["status"]["desiredReplicas"] == 1, timeout=60,
             what="a scale-down")
    messages = [e["message"] for e in c.events(rid)]
    assert any(m.startswith("Scaled up to 2") for m in messages)
    assert any(m.startswith("Scaled down to 1") for m in messages)


def test_gpu_allocation_never_overlaps():
    backend = LocalBackend("/tmp/unused-liveml-home", gpus=["T4", "T4", "A100"])

    def hold(node: str, gpus: tuple[int, ...]) -> None:
        backend.replicas[node] = LocalReplica(spec=None, proc=None, port_file=None,  # type: ignore[arg-type]
                                              log_file=None, gpus=gpus)

    first = backend.allocate_gpus(1, "T4")
    hold("a", first)
    second = backend.allocate_gpus(1, "T4")
    assert first != second
    hold("b", second)
    with pytest.raises(NoCapacity, match="no GPU free"):
        backend.allocate_gpus(1, "T4")
    assert backend.allocate_gpus(1) == (2,)
    assert backend.allocate_gpus(0) == ()
    del backend.replicas["a"]
    assert backend.allocate_gpus(1, "T4") == first


def test_cores_go_to_the_least_used():
    backend = LocalBackend("/tmp/unused-liveml-home", gpus=[], pin_cpus=True)
    backend.cores = [0, 1, 2, 3]
    for node, cores in (("a", (0, 1)), ("b", (1,))):
        backend.replicas[node] = LocalReplica(spec=None, proc=None, port_file=None,  # type: ignore[arg-type]
                                              log_file=None, cores=cores)
    assert backend.allocate_cores(1.0) == (2,)
    assert backend.allocate_cores(1.5) == (2, 3)
    assert backend.allocate_cores(3.0) == (0, 2, 3)
    assert backend.allocate_cores(8) == ()  # all cores: no pinning


def test_a_rolled_out_target_spreads_over_the_cores():
    """Mid-roll: an old replica on core 1 is going away; the new ones take cores 0 and 1."""
    backend = LocalBackend("/tmp/unused-liveml-home", gpus=[], pin_cpus=True)
    backend.cores = [0, 1]

    def spec(release: str, generation: int) -> ReplicaSpec:
        return ReplicaSpec(node_id="n", deployment_rid="d", namespace="default",
                           release_rid=release, release_version="1", model_uuid="u",
                           artifact_uri="a", runtime_configuration={}, generation=generation)

    backend.replicas["old"] = LocalReplica(spec=spec("r1", 1), proc=None, port_file=None,  # type: ignore[arg-type]
                                           log_file=None, cores=(1,))
    backend.replicas["new"] = LocalReplica(spec=spec("r1", 2), proc=None, port_file=None,  # type: ignore[arg-type]
                                           log_file=None, cores=(0,))
    new = spec("r1", 2)
    assert backend.allocate_cores(1.0, (new.deployment_rid, new.release_rid, new.generation)) == (1,)


def test_memory_is_checked_afresh_before_a_replica_takes_traffic(tmp_path):
    """The periodic RSS check is rate-limited; ``fresh`` (asked before READY) is not."""

    backend = LocalBackend(tmp_path, gpus=[], memory_check_interval=3600.0)
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; print(flush=True); "
                             "sys.stdin.readline(); x = bytearray(80 * 2**20); time.sleep(60)"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    spec = ReplicaSpec(node_id="n", deployment_rid="d", namespace="default", release_rid="r",
                       release_version="1", model_uuid="u", artifact_uri="a",
                       runtime_configuration={}, generation=1)
    handle = LocalReplica(spec=spec, proc=proc, port_file=tmp_path / "port",
                          log_file=tmp_path / "log", memory_limit=60 * 2**20)
    backend.replicas["n"] = handle
    try:
        proc.stdout.readline()
        assert backend.observe(handle).alive  # checked now, under the limit
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        wait_for(lambda: psutil.Process(proc.pid).memory_info().rss > 70 * 2**20,
                 what="the allocation")
        assert backend.observe(handle).alive  # the next periodic check is an hour away
        seen = backend.observe(handle, fresh=True)
        assert not seen.alive and seen.exit_reason.startswith("out of memory")
        assert proc.poll() is not None and "n" not in backend.replicas
    finally:
        proc.kill()
        proc.wait()


def test_a_deployment_deleted_while_a_replica_starts_leaves_no_process(tmp_path):
    """The controller awaits the backend's start; a delete that lands meanwhile has already
    stopped what the deployment ran, so the replica that comes up afterwards must be stopped by
    the pass that started it (it belongs to no deployment any more)."""
    import asyncio
    from types import SimpleNamespace

    from liveml_ext.artifacts import ArtifactStore
    from liveml_ext.controller.base import Desired
    from liveml_ext.controller.reconciler import Controller
    from liveml_ext.core.registry import Registry
    from liveml_ext.gateway.pool import Gateway
    from liveml_ext.store.db import Store

    class Gated(LocalBackend):
        """The real backend; ``start`` returns only when the test lets it."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.started, self.gate = asyncio.Event(), asyncio.Event()

        async def start(self, spec):
            handle = await super().start(spec)
            self.started.set()
            await self.gate.wait()
            return handle

    row = SimpleNamespace(enabled=True, generation=1, api_name="house", environment="production",
                          runtime_configuration={"minReplicas": 1, "maxReplicas": 1})
    release = SimpleNamespace(rid="ri.release", version="1.0.0")
    sub = SimpleNamespace(model_uuid="u", artifact_sha256="ab" * 32, requirements={}, api={})

    async def scenario(event: str) -> tuple[Gated, Controller, BaseException | None]:
        store = Store(f"sqlite:///{tmp_path / f'{event}.sqlite'}")
        backend = Gated(tmp_path / event, gpus=[])
        ctl = Controller(store, Registry(store), ArtifactStore(str(tmp_path / "a"), tmp_path / "c"),
                         backend, Gateway(), drain_timeout=5.0)
        # the read that the change makes outdated
        ctl.desired = lambda rt: Desired(row, release, sub, typed_runtime(row.runtime_configuration))
        rt = ctl._runtime("ri.dep", "default")
        task = asyncio.get_running_loop().create_task(ctl.reconcile(rt))
        await asyncio.wait_for(backend.started.wait(), 30)
        ctl.changed("ri.dep", event)  # as the service does: stop everything it ran
        backend.gate.set()
        # the loop logs a pass's exception and goes on; what matters is what is left running
        (outcome,) = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
        await asyncio.wait_for(asyncio.gather(*ctl._stopping), 30)
        store.close()
        return backend, ctl, outcome

    backend, ctl, outcome = asyncio.run(scenario("deleted"))
    assert not backend.replicas, "the replica of a deleted deployment was left running"
    assert "ri.dep" not in ctl.runtimes and outcome is None

    backend, ctl, outcome = asyncio.run(scenario("disabled"))
    pool = ctl.gateway.pools["ri.dep"]
    assert pool.members == [] and "disabled" in pool.unavailable_reason  # not STARTING's reason
    assert ctl.runtimes["ri.dep"].state == "STARTING"  # nothing recorded from the outdated read
    assert outcome is None
    for handle in list(backend.replicas.values()):  # the next pass would retire it
        asyncio.run(backend.stop(handle, grace=5.0))

"""The backend behaviour suite: the same user-visible semantics on the local backend and on the
Kubernetes backend.

Each test runs against a real control plane (``liveml server``) with real replica processes and
real HTTP. On ``kubernetes`` the control plane runs with ``--backend kubernetes`` against the
simulated cluster of ``tests/kube_sim.py`` (a real API server for the official client whose pods
are real ``liveml_runtime`` processes); pods download their artifact from the control plane with
the replica token from the Secret, exactly as in a cluster without an object store. What differs
by design is asserted per backend (e.g. pods outlive a control-plane restart; local replicas do
not). Names contain "kubernetes" so ``pytest -k kubernetes`` selects the module.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import Loops, Server, free_port, runtime_pids, start_server, wait_for
from kube_sim import KubeSim
from model_fixtures import EnvEcho, PlainPricer, save

from liveml_ext.backends.k8s_manifests import object_name
from liveml_ext.backends.kubernetes import MANAGED_SELECTOR as MANAGED
from liveml_ext.backends.kubernetes import KubernetesCluster
from liveml_ext.client import LiveMLClientError

X = [{"x": 1.0}]
NAMESPACE = "liveml"


@dataclass
class Setup:
    kind: str  # "local" or "kubernetes"
    server: Server
    sim: KubeSim | None
    home: Path
    args: tuple[str, ...]
    cluster: KubernetesCluster | None = None  # the Kubernetes API of the replicas' namespace
    remote: bool = False  # pods run elsewhere (a real cluster): count pods, not processes
    runtime: dict = field(default_factory=dict)  # runtime configuration every test deploys with

    def processes(self, rid: str) -> list:
        """Replica processes serving deployment ``rid``, whichever backend started them (on a
        real cluster: its pods that are not terminating)."""
        if self.remote:
            assert self.cluster is not None
            pods = self.cluster._json(self.cluster.core.list_namespaced_pod(
                self.cluster.namespace, label_selector=MANAGED, **self.cluster._call))["items"]
            return [p["metadata"]["name"] for p in pods
                    if (p["metadata"].get("annotations") or {}).get("liveml.dev/deployment-rid") == rid
                    and not p["metadata"].get("deletionTimestamp")]
        return runtime_pids(rid)

    def restart(self) -> None:
        self.server.stop()
        self.server = start_server(self.home, port=self.server.port, args=self.args)


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: sim, cluster: {{server: "{url}"}}}}]
users: [{{name: liveml, user: {{token: not-checked}}}}]
contexts: [{{name: sim, context: {{cluster: sim, user: liveml, namespace: {NAMESPACE}}}}}]
current-context: sim
""")
    return path


#: the simulator's cut of the rendered 5 s preStop pause. A terminating pod serves on for this
#: long, while the control plane (polling every 0.5 s here) takes it out of the gateway pool and
#: starts following its log to the end: as in a cluster (5 s against a 2 s poll), it has to be
#: several polls long, or a busy machine shows failed queries or lost last log lines that a
#: cluster would not. (A poll is slower than its interval under load: 2 s proved too short.)
PRESTOP = 3.0


@pytest.fixture(scope="module", params=["local", "kubernetes"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    sim = None
    args: tuple[str, ...] = ("--metrics-interval", "1")
    port = free_port()
    if request.param == "kubernetes":
        # a roomy node: the simulated scheduler adds up CPU requests, as Kubernetes does, and a
        # re-roll of 2 replicas of 1 CPU needs a third (maxSurge) beyond this machine's 2 cores
        sim = KubeSim(cpu=32, memory=64 * 2**30, prestop_cap=PRESTOP).start()
        config = kubeconfig(home.parent / f"kubeconfig-{home.name}", sim.url)
        args += ("--backend", "kubernetes", "--kubeconfig", str(config),
                 "--kube-poll-interval", "0.5",
                 "--control-plane-url", f"http://127.0.0.1:{port}")
    server = start_server(home, port=port, args=args)
    cluster = KubernetesCluster(NAMESPACE, sim.api_client()) if sim is not None else None
    s = Setup(request.param, server, sim, home, args, cluster)
    yield s
    s.server.stop()
    if cluster is not None:
        cluster.close()
    if sim is not None:
        sim.stop()


def deploy(s: Setup, tmp_path: Path, name: str, wait: bool = True, **runtime) -> str:
    c = s.server.client
    path = save(EnvEcho(), tmp_path / f"{name}.pkl")
    c.create_objective(name)
    c.submit(name, path, name="m")
    c.release(name, "m", "1.0", tag="production")
    runtime = {"minReplicas": 2, "maxReplicas": 2, **s.runtime, **runtime}
    rid = c.deploy(name, name=name, runtime=runtime)["rid"]
    if wait:
        c.wait(rid, timeout=120)
    return rid


def env(s: Setup, **values: str) -> dict[str, str]:
    """The setup's own env (e.g. object store credentials on a real cluster) plus ``values``."""
    return {**s.runtime.get("env", {}), **values}


def ready_nodes(doc: dict) -> set[str]:
    return {r["nodeId"] for r in doc["status"]["replicas"] if r["state"] == "READY"}


def greeting(s: Setup, rid: str) -> requests.Response:
    return requests.post(s.server.infer_url(rid), json={"requestData": X, "requestParams": {}},
                         headers=s.server.headers(), timeout=30)


def test_backend_lifecycle_on_local_and_kubernetes(setup: Setup, tmp_path: Path) -> None:
    """deploy → query → re-roll under load with no failed query → logs by node → disable →
    enable → delete, with the replicas' processes started and stopped accordingly."""
    s, c = setup, setup.server.client
    rid = deploy(s, tmp_path, "life")
    doc = c.deployment(rid)
    first = ready_nodes(doc)
    assert len(first) == 2 and doc["status"]["state"] == "ACTIVE"
    if s.kind == "kubernetes":  # node id = pod name, under the deployment's object name
        assert all(n.startswith(object_name("life", "default") + "-") for n in first), first
    assert len(s.processes(rid)) == 2
    assert greeting(s, rid).json()["responseData"][0]["greeting"] == ""

    with Loops(s.server, rid, rows=X, field="greeting") as loops:
        c.update(rid, runtimeConfiguration={"env": env(s, GREETING="hi")})
        wait_for(lambda: loops.results and loops.results[-1][1] == "hi", timeout=120,
                 what="the new generation serving")
        doc = wait_for(lambda: (d := c.deployment(rid))["status"]["state"] == "ACTIVE" and
                       len(ready_nodes(d)) == 2 and not ready_nodes(d) & first and
                       len(d["status"]["replicas"]) == 2 and d, timeout=120, what="the re-roll")
        time.sleep(0.3)
    assert loops.failures() == [], loops.failures()[:5]
    assert len(loops.results) > 20
    wait_for(lambda: len(s.processes(rid)) == 2, timeout=60, what="old replicas stopped")
    # what a replica logs as it drains and exits is kept, up to its last line
    for gone in first:
        wait_for(lambda n=gone: c.logs(rid, query=f'tags.node_id:"{n}" AND "Replica stopped"',
                                       since="1h")["data"], timeout=30,
                 what=f"the last log line of {gone}")

    # the startup story of one replica, found by its node id
    node = sorted(ready_nodes(doc))[0]
    def startup() -> list[dict]:
        rows = c.logs(rid, query=f'tags.node_id:"{node}"', since="1h", limit=200)["data"]
        return rows if any(r["message"] == "Replica ready" for r in rows) else []

    found = wait_for(startup, timeout=30, what="the replica's startup logs")
    messages = " | ".join(r["message"] for r in found)
    assert "Replica ready" in messages and "Model loaded" in messages, messages
    assert {r["node_id"] for r in found} == {node}

    c.disable(rid)
    assert c.deployment(rid)["status"]["state"] == "DISABLED"
    assert greeting(s, rid).status_code == 503
    wait_for(lambda: not s.processes(rid), timeout=60, what="replicas stopped on disable")
    c.enable(rid)
    c.wait(rid, timeout=120)
    assert greeting(s, rid).json()["responseData"][0]["greeting"] == "hi"

    c.delete(rid)
    with pytest.raises(LiveMLClientError) as err:
        c.deployment(rid)
    assert err.value.status == 404
    assert greeting(s, rid).status_code == 404
    wait_for(lambda: not s.processes(rid), timeout=60, what="replicas stopped on delete")
    if s.cluster is not None:
        name = object_name("life", "default")
        wait_for(lambda: name not in s.cluster.managed(), timeout=60, what="the objects deleted")


def test_backend_serves_a_plain_class_with_its_input_example(setup: Setup, tmp_path: Path) -> None:
    """The submission's input example reaches every replica (a file locally, LIVEML_INPUT_EXAMPLE
    in a pod): its columns are declared and enforced, as at submission."""
    s, c = setup, setup.server.client
    rows = [{"bedrooms": 3, "bathrooms": 1.5}, {"bedrooms": None, "bathrooms": 1.0}]
    c.create_objective("plain-example")
    c.submit("plain-example", save(PlainPricer(), tmp_path / "plain.pkl"), name="p",
             input_example=rows)
    c.release("plain-example", "p", "1.0", tag="production")
    runtime = {"minReplicas": 1, "maxReplicas": 1, **s.runtime}
    rid = c.wait(c.deploy("plain-example", name="plain-example", runtime=runtime)["rid"],
                 timeout=120)["rid"]

    def ask(data: list) -> requests.Response:
        return requests.post(s.server.infer_url(rid), json={"requestData": data},
                             headers=s.server.headers(), timeout=30)

    answer = ask([{"bedrooms": 2, "bathrooms": 1.0}, {"bedrooms": None, "bathrooms": 2.0}])
    assert answer.status_code == 200, answer.text
    assert [r["prediction"] for r in answer.json()["responseData"]][0] == 225_000.0
    bad = ask([{"bedrooms": 2.5, "bathrooms": 1.0}])
    assert bad.status_code == 400
    assert bad.json()["parameters"]["errorType"] == {
        "type": "typeMismatch", "input": "input_df", "column": "bedrooms", "row": 0,
        "expected": "integer", "actual": "double"}
    c.delete(rid)


def test_backend_failed_release_keeps_the_old_replicas_serving(setup: Setup, tmp_path: Path) -> None:
    """A configuration whose model cannot load never takes traffic: DEGRADED with the model's
    error as the reason, the old replicas serve, and a good configuration recovers."""
    s, c = setup, setup.server.client
    rid = deploy(s, tmp_path, "failing")
    old = ready_nodes(c.deployment(rid))
    with Loops(s.server, rid, rows=X, field="greeting") as loops:
        c.update(rid, runtimeConfiguration={"env": env(s, FAIL_AT_LOAD="1")})
        doc = wait_for(lambda: (d := c.deployment(rid))["status"]["state"] == "DEGRADED" and
                       "FAIL_AT_LOAD is set" in d["status"]["reason"] and d, timeout=120,
                       what="DEGRADED with the model's error")
        assert ready_nodes(doc) == old and doc["status"]["isReady"]
        c.update(rid, runtimeConfiguration={"env": env(s, GREETING="fixed")})
        wait_for(lambda: loops.results and loops.results[-1][1] == "fixed", timeout=120,
                 what="the fixed configuration serving")
        doc = c.wait(rid, timeout=120)
        time.sleep(0.3)
    assert loops.failures() == [], loops.failures()[:5]
    assert doc["status"]["state"] == "ACTIVE"
    events = " | ".join(e["message"] for e in c.events(rid, limit=10_000))
    if s.kind == "kubernetes":  # the crash loop, as Kubernetes reported it
        assert "Kubernetes BackOff" in events, events
    else:
        assert "failed to start" in events, events
    c.delete(rid)


def test_backend_metrics_per_replica(setup: Setup, tmp_path: Path) -> None:
    """Container metrics per replica (process tree locally, metrics.k8s.io on Kubernetes), host
    metrics, and request metrics from the gateway."""
    s, c = setup, setup.server.client
    rid = deploy(s, tmp_path, "metered")
    nodes = ready_nodes(c.deployment(rid))
    for _ in range(20):
        assert greeting(s, rid).status_code == 200
    # every replica is ready, so has loaded its model: samples from now on must show it
    loaded = dt.datetime.now(dt.UTC)

    def container() -> dict[str, list[float]]:
        rows = c.metrics(rid, kind="container", since="10m")
        by_node: dict[str, list[float]] = {}
        for row in rows:
            if row["name"] == "memory_bytes" and dt.datetime.fromisoformat(row["time"]) > loaded:
                by_node.setdefault(row["nodeId"], []).append(row["value"])
        return by_node if all(by_node.get(n) for n in nodes) else {}

    by_node = wait_for(container, timeout=30, interval=0.5, what="container metrics")
    assert all(values[-1] > 40 * 2**20 for node, values in by_node.items() if node in nodes), by_node
    host = c.metrics(rid, kind="host", since="10m")
    assert {r["name"] for r in host} >= {"cpu_percent", "memory_percent"}
    assert all(0 <= r["value"] <= 100 for r in host)
    def counted() -> float:
        return sum(r["value"] for r in c.metrics(rid, kind="requests", since="10m")
                   if r["nodeId"] == "*" and r["name"] == "count")

    assert wait_for(lambda: counted() >= 20, timeout=30, interval=0.5, what="request metrics")
    assert counted() == 20  # every query counted once
    c.delete(rid)


def test_backend_control_plane_restart(setup: Setup, tmp_path: Path) -> None:
    """After a restart the deployment is ACTIVE again. Local replicas are children of the control
    plane and are started anew; Kubernetes pods outlive it and keep their names, with no new
    rollout and no log line read twice."""
    s, c = setup, setup.server.client
    rid = deploy(s, tmp_path, "restarted")
    before = ready_nodes(c.deployment(rid))
    node = sorted(before)[0]
    query = f'tags.node_id:"{node}" AND "Replica ready"'
    wait_for(lambda: c.logs(rid, query=query, since="1h")["data"], timeout=30, what="logs shipped")
    s.restart()
    c = s.server.client
    doc = c.wait(rid, timeout=120)
    assert greeting(s, rid).status_code == 200
    if s.kind == "kubernetes":
        assert ready_nodes(doc) == before
        time.sleep(3)  # a few polls of the pod logs after the restart
        assert len(c.logs(rid, query=query, since="1h")["data"]) == 1
        events = [e["message"] for e in c.events(rid, limit=200)]
        assert not any(m.startswith("Rolling out") for m in events), events
    else:
        assert not ready_nodes(doc) & before
    c.delete(rid)


def test_kubernetes_unschedulable_gpu_is_reported(setup: Setup, tmp_path: Path) -> None:
    """A GPU no node has: accepted (the cluster may grow one), pods wait Unschedulable, the status
    and events say why. The local backend refuses it up front instead."""
    s, c = setup, setup.server.client
    if s.kind == "local":
        with pytest.raises(LiveMLClientError) as err:
            deploy(s, tmp_path, "gpu", gpu=1)
        assert err.value.status == 400 and err.value.name == "InvalidGpuCount"
        return
    rid = deploy(s, tmp_path, "gpu", wait=False, gpu=1, minReplicas=1, maxReplicas=1)
    doc = wait_for(lambda: (d := c.deployment(rid))["status"]["state"] == "STARTING" and
                   "Insufficient nvidia.com/gpu" in d["status"]["reason"] and d, timeout=60,
                   what="the scheduling failure in the status")
    assert not doc["status"]["isReady"]
    wait_for(lambda: any("FailedScheduling" in e["message"] for e in c.events(rid, limit=200)),
             timeout=60, what="the FailedScheduling event")
    assert greeting(s, rid).status_code == 503
    c.delete(rid)


def test_backend_api_name_change_drops_no_query(setup: Setup, tmp_path: Path) -> None:
    """A new API name keeps the RID and serving. On Kubernetes the objects are named after the API
    name: the new ones are applied, the old ones serve until the new pods are ready, then go."""
    s, c = setup, setup.server.client
    rid = deploy(s, tmp_path, "renamed")
    with Loops(s.server, rid, rows=X, field="greeting") as loops:
        c.set_api_name(rid, "renamed_again")
        doc = c.deployment(rid)
        assert doc["apiName"] == "renamed_again"
        if s.kind == "kubernetes":
            new = object_name("renamed_again", "default") + "-"
            doc = wait_for(lambda: (d := c.deployment(rid))["status"]["state"] == "ACTIVE" and
                           len(d["status"]["replicas"]) == 2 and
                           all(r["nodeId"].startswith(new) for r in d["status"]["replicas"]) and d,
                           timeout=120, what="the pods of the new name, alone")
            assert s.cluster is not None
            wait_for(lambda: object_name("renamed", "default") not in s.cluster.managed(),
                     timeout=60, what="the old objects deleted")
        wait_for(lambda: len(loops.results) > 10, timeout=30, what="answers after the rename")
    assert loops.failures() == [], loops.failures()[:5]
    assert c.deployment("renamed_again")["rid"] == rid
    c.delete(rid)
    wait_for(lambda: not s.processes(rid), timeout=60, what="replicas stopped on delete")


def test_kubernetes_backend_in_jupyter_by_traitlets(tmp_path: Path, house_model: Path) -> None:
    """The Jupyter extension with ``backend = "kubernetes"``: deploy and query through Jupyter;
    pods outlive the Jupyter server, as they outlive any control plane."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from liveml_ext.client import Client

    with KubeSim(cpu=32, memory=64 * 2**30, prestop_cap=PRESTOP) as sim:
        home, port = tmp_path / "jhome", free_port()
        home.mkdir()
        config = kubeconfig(tmp_path / "kubeconfig", sim.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
        env.update(LIVEML_HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "rt"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--port={port}",
             "--ServerApp.ip=127.0.0.1", "--allow-root", "--IdentityProvider.token=jt",
             "--ServerApp.base_url=/jl/", f"--ServerApp.root_dir={home}",
             "--LiveMLExtension.backend=kubernetes", f"--LiveMLExtension.kubeconfig={config}",
             "--LiveMLExtension.kube_poll_interval=0.5",
             f"--LiveMLExtension.control_plane_url=http://127.0.0.1:{port}/jl"],
            stdout=open(home / "jupyter.log", "wb"), stderr=subprocess.STDOUT, env=env)
        try:
            conn = home / "connection.json"
            wait_for(lambda: conn.exists() or proc.poll() is not None, timeout=60, what="jupyter")
            assert proc.poll() is None, (home / "jupyter.log").read_text()
            c = Client(json.loads(conn.read_text())["url"], "jt")
            assert c.api("GET", "whoami")["backend"] == "kubernetes"
            c.create_objective("jk")
            c.submit("jk", house_model, name="v1")
            c.release("jk", "v1", "1.0", tag="production")
            rid = c.wait(c.deploy("jk", name="jk", replicas=1)["rid"], timeout=120)["rid"]
            (pod,) = [r["nodeId"] for r in c.deployment(rid)["status"]["replicas"]]
            assert pod in sim.processes()
            answer = c.query(rid, {"requestData": [{"house-location": "New York", "bedrooms": 3,
                                                    "bathrooms": 1.5}], "requestParams": {}})
            assert answer["responseData"][0]["prediction"] > 0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        assert pod in sim.processes()  # still running: Kubernetes owns the pods


def test_kubernetes_rollout_deadline_from_the_server_flag(tmp_path: Path) -> None:
    """``--progress-deadline`` becomes the Deployment's progressDeadlineSeconds: a release whose
    pods never get ready is DEGRADED with the deadline as the reason and the old pod serves (as on
    the local backend, tests/test_rollouts.py); a good configuration then rolls out."""
    with KubeSim(cpu=32, memory=64 * 2**30, prestop_cap=PRESTOP) as sim:
        port = free_port()
        config = kubeconfig(tmp_path / "kubeconfig", sim.url)
        server = start_server(tmp_path / "home", port=port, args=(
            "--backend", "kubernetes", "--kubeconfig", str(config), "--kube-poll-interval", "0.5",
            "--control-plane-url", f"http://127.0.0.1:{port}", "--progress-deadline", "5"))
        try:
            s = Setup("kubernetes", server, sim, tmp_path / "home", ())
            c = server.client
            rid = deploy(s, tmp_path, "deadline", minReplicas=1, maxReplicas=1)
            old = ready_nodes(c.deployment(rid))
            c.update(rid, runtimeConfiguration={"env": {"SLOW_LOAD": "60"}})
            doc = wait_for(lambda: (d := c.deployment(rid))["status"]["state"] == "DEGRADED" and d,
                           timeout=60, what="the deadline")
            assert "exceeded its progress deadline" in doc["status"]["reason"], doc["status"]
            assert doc["status"]["rollout"]["state"] == "FAILED"
            assert ready_nodes(doc) == old
            with pytest.raises(LiveMLClientError) as err:
                c.wait(rid, timeout=5)
            assert err.value.name == "DeploymentNotReady"
            assert greeting(s, rid).status_code == 200
            # Kubernetes goes on rolling past a deadline: a good configuration completes
            c.update(rid, runtimeConfiguration={"env": {"GREETING": "back"}})
            answers = []
            wait_for(lambda: c.deployment(rid)["status"]["state"] == "ACTIVE" and
                     answers.append(greeting(s, rid)) is None and answers[-1].status_code == 200
                     and answers[-1].json()["responseData"][0]["greeting"] == "back",
                     timeout=120, what="the good configuration serving")
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        finally:
            server.stop()


def test_kubernetes_unreachable_api_is_the_reason(tmp_path: Path) -> None:
    """No API server where the kubeconfig points: the control plane still serves its API, and a
    deployment is FAILED with the reason (it is retried with back-off, not dropped)."""
    config = kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    server = start_server(tmp_path / "home", args=("--backend", "kubernetes", "--kubeconfig",
                                                   str(config)))
    try:
        s = Setup("kubernetes", server, None, tmp_path / "home", ())
        rid = deploy(s, tmp_path, "nowhere", wait=False)
        doc = wait_for(lambda: (d := server.client.deployment(rid))["status"]["state"] == "FAILED"
                       and d, timeout=30, what="FAILED")
        assert "the Kubernetes API could not be reached" in doc["status"]["reason"]
        assert greeting(s, rid).status_code == 503
    finally:
        server.stop()


def test_backend_autoscaled_then_fixed_count(setup: Setup, tmp_path: Path) -> None:
    """min < max: the autoscaler owns the count (on Kubernetes an HPA), starting at min; a fixed
    count then takes over (the HPA goes) with no failed query."""
    s, c = setup, setup.server.client
    rid = deploy(s, tmp_path, "scaled", minReplicas=1, maxReplicas=3)
    doc = c.deployment(rid)
    assert len(ready_nodes(doc)) == 1 and doc["status"]["desiredReplicas"] == 1
    name = object_name("scaled", "default")
    if s.cluster is not None:
        assert name in s.cluster.autoscalers()
    with Loops(s.server, rid, rows=X, field="greeting") as loops:
        c.update(rid, runtimeConfiguration={"minReplicas": 2, "maxReplicas": 2})
        doc = c.wait(rid, timeout=120)
        time.sleep(0.3)
    assert loops.failures() == [], loops.failures()[:5]
    assert len(ready_nodes(doc)) == 2 and doc["status"]["desiredReplicas"] == 2
    if s.cluster is not None:
        assert name not in s.cluster.autoscalers()
    c.delete(rid)

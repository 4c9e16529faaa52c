"""The kubelet: one worker thread per scheduled pod runs its container as a local process, with
probes, restarts and back-off, the memory limit, graceful termination and pod status."""
from __future__ import annotations

import base64
import http.client
import math
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

import psutil

from .common import (
    MEMORY_CHECK,
    NODE_NAME,
    TERMINATION_LOG_BYTES,
    TERMINATION_LOG_LINES,
    _bind_here,
    _dial_error,
    _Instance,
    _killpg,
    _local_command,
    _Pod,
    expand,
    parse_quantity,
    rfc3339,
    tree_usage,
)


class Kubelet:
    """Runs and supervises pods (mixed into ``KubeSim``)."""

    # ------------------------------------------------------------------------- pod status

    def _terminate(self, pod: _Pod, grace: float | None) -> None:
        """Begin a graceful deletion (the kubelet worker finishes it); unscheduled pods go at once."""
        if grace is None:
            grace = float(pod.obj["spec"].get("terminationGracePeriodSeconds", 30))
        if pod.terminating:
            pod.grace = min(pod.grace, grace)
            return
        pod.terminating, pod.grace, pod.ready = True, grace, False
        meta = pod.obj["metadata"]
        meta["deletionTimestamp"] = rfc3339(time.time() + grace)
        meta["deletionGracePeriodSeconds"] = int(grace)
        pod.stop_event.set()
        if pod.worker is None:
            self._pods.pop((pod.namespace, pod.name), None)
            return
        self._refresh(pod)

    def _refresh(self, pod: _Pod) -> None:
        new_status = self._pod_status(pod)
        if new_status != pod.obj.get("status"):
            pod.obj["status"] = new_status
            pod.obj["metadata"]["resourceVersion"] = self._next_rv()

    def _pod_status(self, pod: _Pod) -> dict[str, Any]:
        conditions: list[dict[str, Any]] = []

        def condition(kind: str, ok: bool, reason: str = "", message: str = "") -> None:
            state = "True" if ok else "False"
            before = pod.conditions.get(kind)
            since = before[1] if before and before[0] == state else rfc3339()
            pod.conditions[kind] = (state, since)
            entry: dict[str, Any] = {"type": kind, "status": state, "lastProbeTime": None,
                                     "lastTransitionTime": since}
            if reason:
                entry["reason"] = reason
            if message:
                entry["message"] = message
            conditions.append(entry)

        requests = pod.requests
        limits = (pod.container.get("resources") or {}).get("limits") or {}
        guaranteed = all(k in limits and parse_quantity(limits[k]) == requests.get(k)
                         for k in ("cpu", "memory"))
        qos = "Guaranteed" if guaranteed else ("Burstable" if requests else "BestEffort")
        if not pod.scheduled:
            if pod.unschedulable:
                condition("PodScheduled", False, "Unschedulable", pod.unschedulable)
            return {"phase": "Pending", "conditions": conditions, "qosClass": qos}
        name = pod.container["name"]
        ready = pod.ready and not pod.terminating
        not_ready = f"containers with unready status: [{name}]"
        condition("PodReadyToStartContainers", True)
        condition("Initialized", True)
        condition("Ready", ready, "" if ready else "ContainersNotReady", "" if ready else not_ready)
        condition("ContainersReady", ready, "" if ready else "ContainersNotReady", "" if ready else not_ready)
        condition("PodScheduled", True)
        if pod.current is not None:
            state: dict[str, Any] = {"running": {"startedAt": pod.current.started_at}}
        elif pod.waiting is not None:
            reason, message = pod.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        elif pod.last is not None:
            state = {"terminated": pod.last.terminated()}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        last = pod.last if (pod.current is not None or pod.waiting is not None) else (
            pod.instances[-2] if pod.ended and len(pod.instances) > 1 else None)
        shown = pod.current or pod.last
        image = pod.container.get("image", "")
        status_: dict[str, Any] = {
            "name": name, "image": image, "imageID": f"sim://{image}" if pod.instances else "",
            "ready": ready, "started": pod.started and pod.current is not None,
            "restartCount": pod.restarts, "state": state,
            "lastState": {"terminated": last.terminated()} if last is not None else {}}
        if shown is not None:
            status_["containerID"] = shown.container_id
        return {"phase": "Running" if pod.instances else "Pending", "conditions": conditions,
                "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "podIP": pod.ip,
                "podIPs": [{"ip": pod.ip}], "startTime": pod.start_time, "containerStatuses": [status_],
                "qosClass": qos}

    def _set(self, pod: _Pod, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(pod, key, value)
            self._refresh(pod)

    def _pod_event(self, pod: _Pod, type_: str, reason: str, message: str, container: bool = True) -> None:
        with self._lock:
            self._event(pod.obj, type_, reason, message, "kubelet",
                        f"spec.containers{{{pod.container['name']}}}" if container else "")

    # ------------------------------------------------------------------------------ kubelet

    def _backoff(self, n: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2 ** max(0, n - 1))

    def _period(self, probe: Mapping[str, Any]) -> float:
        return min(float(probe.get("periodSeconds", 10)), self.probe_period)

    def _kubelet(self, pod: _Pod) -> None:
        """One pod's life on the node: pull, run, probe, restart, and finally stop."""
        try:
            if self._pull(pod):
                self._run(pod)
        except Exception as exc:  # noqa: BLE001 - a simulator bug shows on the pod and in stderr
            traceback.print_exc()
            if pod.current is not None and pod.current.proc is not None:
                _killpg(pod.current.proc.pid, signal.SIGKILL)
            self._set(pod, waiting=("SimulatorError", f"{type(exc).__name__}: {exc}"), ready=False)
            pod.stop_event.wait()
        finally:
            self._finish(pod)

    def _pull(self, pod: _Pod) -> bool:
        image = str(pod.container.get("image", ""))
        attempt = 0
        while image in self.bad_images:
            attempt += 1
            error = (f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                     f"{image}: not found (a bad image of the simulator)")
            self._pod_event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
            self._pod_event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {error}')
            self._pod_event(pod, "Warning", "Failed", "Error: ErrImagePull")
            self._set(pod, waiting=("ErrImagePull", error))
            if pod.stop_event.wait(self.backoff_base):
                return False
            self._pod_event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
            self._pod_event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
            self._set(pod, waiting=("ImagePullBackOff",
                                    f'Back-off pulling image "{image}": ErrImagePull: {error}'))
            if pod.stop_event.wait(self._backoff(attempt)):
                return False
        if pod.stop_event.is_set():
            return False
        self._pod_event(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine')
        return True

    def _run(self, pod: _Pod) -> None:
        crashes = 0
        name = pod.container["name"]
        while not pod.stop_event.is_set():
            with self._lock:
                env, values, problem = self._container_env(pod)
            if problem:
                self._pod_event(pod, "Warning", "Failed", f"Error: {problem}")
                self._set(pod, waiting=("CreateContainerConfigError", problem))
                if pod.stop_event.wait(max(self.backoff_base, 0.5)):
                    return
                continue
            instance = self._start(pod, env, values)
            if instance is None:
                return  # stopping
            if instance.proc is not None:
                if self._supervise(pod, instance) == "terminate":
                    return
            ran = time.monotonic() - instance.started_mono
            crashes = 1 if ran > 2 * self.backoff_cap else crashes + 1
            delay = self._backoff(crashes)
            meta = pod.obj["metadata"]
            self._pod_event(pod, "Warning", "BackOff",
                            f"Back-off restarting failed container {name} in pod "
                            f"{pod.name}_{pod.namespace}({meta['uid']})")
            self._set(pod, waiting=("CrashLoopBackOff", f"back-off {delay:g}s restarting failed container="
                                    f"{name} pod={pod.name}_{pod.namespace}({meta['uid']})"))
            if pod.stop_event.wait(delay):
                return

    def _container_env(self, pod: _Pod) -> tuple[dict[str, str], dict[str, str], str]:
        """The process environment (a base of this process's, minus ``LIVEML_*``, then the
        container's variables), the container's own variables (what ``$(VAR)`` may name), or a
        CreateContainerConfigError message. Called under the lock (it reads Secrets)."""
        container = pod.container
        values: dict[str, str] = {}
        meta = pod.obj["metadata"]
        fields = {"metadata.name": meta["name"], "metadata.namespace": pod.namespace,
                  "metadata.uid": meta["uid"],
                  "spec.nodeName": NODE_NAME, "status.podIP": pod.ip, "status.hostIP": "127.0.0.1",
                  "spec.serviceAccountName": pod.obj["spec"].get("serviceAccountName", "default")}

        def secret_data(name: str) -> dict[str, str] | None:
            stored = self._objects.get(("Secret", pod.namespace, name))
            return None if stored is None else dict(stored.obj.get("data") or {})

        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref is None:
                return {}, {}, "the simulator has no ConfigMaps (envFrom.configMapRef)"
            data = secret_data(ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                return {}, {}, f'secret "{ref.get("name")}" not found'
            for key, value in data.items():
                values[source.get("prefix", "") + key] = base64.b64decode(value).decode(errors="replace")
        for item in container.get("env") or []:
            key = item["name"]
            if "valueFrom" not in item:
                values[key] = expand(str(item.get("value", "")), values)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                path = source["fieldRef"].get("fieldPath", "")
                m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
                if m:
                    values[key] = str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
                elif path in fields:
                    values[key] = fields[path]
                else:
                    return {}, {}, f"unsupported fieldRef {path!r} for env {key}"
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                data = secret_data(ref.get("name", ""))
                if data is None or ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    if data is None:
                        return {}, {}, f'secret "{ref.get("name")}" not found'
                    return {}, {}, (f"couldn't find key {ref.get('key')} in Secret "
                                    f"{pod.namespace}/{ref.get('name')}")
                values[key] = base64.b64decode(data[ref["key"]]).decode(errors="replace")
            elif "resourceFieldRef" in source:
                ref = source["resourceFieldRef"]
                kind, _, resource = str(ref.get("resource", "")).partition(".")
                amounts = (container.get("resources") or {}).get(kind) or {}
                if resource == "cpu":
                    default = self.cpu
                elif resource == "memory":
                    default = self.memory
                else:
                    default = 0
                amount = parse_quantity(amounts.get(resource, default))
                values[key] = str(math.ceil(amount / parse_quantity(ref.get("divisor", 1))))
            else:
                return {}, {}, f"unsupported valueFrom for env {key} (the simulator has no ConfigMaps)"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
        env["HOSTNAME"] = pod.name
        if pod.gpus:
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, pod.gpus))
        env.update(values)
        return env, values, ""

    def _argv(self, pod: _Pod, command: list[str], env: Mapping[str, str]) -> list[str]:
        return _bind_here(_local_command([expand(str(a), env) for a in command]), pod.ip)

    def _start(self, pod: _Pod, env: dict[str, str], values: dict[str, str]) -> _Instance | None:
        """A new container instance; None when the simulator is stopping."""
        container = pod.container
        argv = self._argv(pod, [*(container.get("command") or []), *(container.get("args") or [])], values)
        instance = _Instance(number=len(pod.instances), container_id=f"sim://{uuid.uuid4().hex}", env=env,
                             values=values)
        instance.started_at, instance.started_mono = rfc3339(), time.monotonic()
        error = "" if argv else "the simulator needs the container's command (images have no entrypoint here)"
        if not error:
            try:
                instance.proc = subprocess.Popen(argv, cwd=pod.workdir, env=env, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
            except OSError as exc:
                error = f"failed to start container: {exc}"
        with self._lock:
            stopping = self._stopping
            if instance.proc is not None:
                for older in pod.instances[:-1]:  # the kubelet keeps the current and the previous log
                    older.lines.clear()
                pod.instances.append(instance)
                pod.current, pod.waiting, pod.started, pod.ready = instance, None, False, False
                self._refresh(pod)
        if stopping:
            if instance.proc is not None:
                _killpg(instance.proc.pid, signal.SIGKILL)
                instance.proc.wait()
            return None
        if instance.proc is None:
            self._pod_event(pod, "Warning", "Failed", f"Error: {error}")
            instance.exit_code, instance.reason, instance.message = 128, "StartError", error
            instance.finished_at = rfc3339()
            with self._lock:
                pod.instances.append(instance)
                pod.last, pod.restarts = instance, pod.restarts + 1
            return instance
        name = container["name"]
        self._pod_event(pod, "Normal", "Created", f"Created container {name}")
        self._pod_event(pod, "Normal", "Started", f"Started container {name}")
        stream = instance.proc.stdout
        assert stream is not None
        instance.reader = threading.Thread(target=self._read_output, args=(instance, stream),
                                           name=f"log-{pod.name}-{instance.number}", daemon=True)
        instance.reader.start()
        return instance

    def _read_output(self, instance: _Instance, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._lock:
                instance.lines.append((time.time_ns(), line))
        stream.close()

    def _supervise(self, pod: _Pod, instance: _Instance) -> str:
        """Probe and watch a running instance: "terminate" (the pod is going), "exited" (it ended or
        was killed for a failed probe or its memory limit)."""
        container = pod.container
        proc = instance.proc
        assert proc is not None
        probes = {kind: container.get(f"{kind}Probe") for kind in ("startup", "readiness", "liveness")}
        now = time.monotonic()
        due = {kind: now + min(float(p.get("initialDelaySeconds", 0)), self.probe_period)
               for kind, p in probes.items() if p}
        failures = dict.fromkeys(due, 0)
        successes = dict.fromkeys(due, 0)
        started = probes["startup"] is None
        ready = started and probes["readiness"] is None
        self._set(pod, started=started, ready=ready)
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        limit_bytes = int(parse_quantity(limit)) if limit else 0
        next_memory = now
        while True:
            if pod.stop_event.is_set():
                return "terminate"
            if proc.poll() is not None:
                self._exited(pod, instance)
                return "exited"
            now = time.monotonic()
            if limit_bytes and now >= next_memory:
                next_memory = now + MEMORY_CHECK
                try:
                    _, rss = tree_usage(proc.pid)
                except psutil.Error:
                    rss = 0
                if rss > limit_bytes:
                    instance.oom = True
                    _killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    continue
            for kind in ("startup", "readiness", "liveness"):
                probe = probes[kind]
                if not probe or now < due[kind] or (kind == "startup") == started:
                    continue
                due[kind] = now + self._period(probe)
                ok, why = self._probe(pod, probe)
                if pod.stop_event.is_set():
                    return "terminate"
                if ok:
                    failures[kind], successes[kind] = 0, successes[kind] + 1
                else:
                    failures[kind], successes[kind] = failures[kind] + 1, 0
                    self._pod_event(pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {why}")
                threshold = int(probe.get("failureThreshold", 3))
                if kind == "startup" and ok:
                    started = True
                    ready = probes["readiness"] is None
                    for other in ("readiness", "liveness"):
                        if other in due:
                            due[other] = now
                elif kind == "readiness":
                    if ok and successes[kind] >= int(probe.get("successThreshold", 1)):
                        ready = True
                    elif not ok and failures[kind] >= threshold:
                        ready = False
                elif not ok and failures[kind] >= threshold:  # startup or liveness: restart
                    self._pod_event(pod, "Normal", "Killing", f"Container {container['name']} failed {kind} "
                                    "probe, will be restarted")
                    self._set(pod, ready=False)
                    self._stop_process(pod, instance, self._grace(pod, probe))
                    self._exited(pod, instance)
                    return "exited"
                if (started, ready) != (pod.started, pod.ready):
                    self._set(pod, started=started, ready=ready)
            pod.stop_event.wait(0.05)

    @staticmethod
    def _grace(pod: _Pod, probe: Mapping[str, Any] | None = None) -> float:
        if probe and probe.get("terminationGracePeriodSeconds") is not None:
            return float(probe["terminationGracePeriodSeconds"])
        return float(pod.obj["spec"].get("terminationGracePeriodSeconds", 30))

    def _probe(self, pod: _Pod, probe: Mapping[str, Any]) -> tuple[bool, str]:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            return self._try_probe(pod, probe, timeout)
        except ValueError as exc:  # e.g. a named port the container does not have
            return False, str(exc)

    def _try_probe(self, pod: _Pod, probe: Mapping[str, Any], timeout: float) -> tuple[bool, str]:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            host, port = spec.get("host") or pod.ip, self._port(pod, spec.get("port"))
            path = spec.get("path", "/")
            headers = {"User-Agent": "kube-probe/1.31", "Accept": "*/*",
                       **{h["name"]: h["value"] for h in spec.get("httpHeaders") or []}}
            https = str(spec.get("scheme", "HTTP")).upper() == "HTTPS"
            conn = (http.client.HTTPSConnection(host, port, timeout=timeout,
                                                context=ssl._create_unverified_context())
                    if https else http.client.HTTPConnection(host, port, timeout=timeout))
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                scheme = "https" if https else "http"
                return False, f'Get "{scheme}://{host}:{port}{path}": {_dial_error(host, port, exc)}'
            finally:
                conn.close()
            if 200 <= response.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {response.status}"
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host, port = spec.get("host") or pod.ip, self._port(pod, spec.get("port"))
            try:
                socket.create_connection((host, port), timeout=timeout).close()
            except OSError as exc:
                return False, _dial_error(host, port, exc)
            return True, ""
        if "exec" in probe:
            current = pod.current
            env = current.env if current else dict(os.environ)
            command = list(probe["exec"].get("command") or [])
            argv = self._argv(pod, command, current.values if current else {})
            try:
                done = subprocess.run(argv, cwd=pod.workdir, env=env, capture_output=True, timeout=timeout,
                                      start_new_session=True)
            except subprocess.TimeoutExpired:
                return False, f"command {argv!r} timed out"
            except OSError as exc:
                return False, str(exc)
            if done.returncode == 0:
                return True, ""
            output = (done.stdout + done.stderr).decode(errors="replace")[-500:]
            return False, output or f"exit {done.returncode}"
        return False, "the simulator supports httpGet, tcpSocket and exec probes only"

    @staticmethod
    def _port(pod: _Pod, port: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for item in pod.container.get("ports") or []:
            if item.get("name") == port:
                return int(item["containerPort"])
        raise ValueError(f"the container has no port named {port!r}")

    def _exited(self, pod: _Pod, instance: _Instance) -> None:
        """Record the end of an instance that will be restarted."""
        self._record_exit(pod, instance)
        with self._lock:
            pod.current, pod.last = None, instance
            pod.restarts += 1
            pod.started = pod.ready = False
            pod.waiting = ("ContainerCreating", "")
            self._refresh(pod)

    def _record_exit(self, pod: _Pod, instance: _Instance) -> None:
        proc = instance.proc
        assert proc is not None
        code = proc.wait()
        if instance.reader is not None:
            instance.reader.join(2)
        code = 128 - code if code < 0 else code  # killed by signal n: 128 + n
        instance.exit_code = code
        instance.reason = "OOMKilled" if instance.oom else ("Completed" if code == 0 else "Error")
        instance.finished_at = rfc3339()
        if pod.container.get("terminationMessagePolicy") == "FallbackToLogsOnError" and code != 0:
            with self._lock:
                tail = [line for _, line in list(instance.lines)[-TERMINATION_LOG_LINES:]]
            text = "\n".join(tail) + ("\n" if tail else "")
            instance.message = text.encode()[-TERMINATION_LOG_BYTES:].decode("utf-8", errors="ignore")

    def _stop_process(self, pod: _Pod, instance: _Instance, grace: float) -> None:
        """preStop hook (cut at ``prestop_cap``), SIGTERM, the grace period, SIGKILL of the group."""
        proc = instance.proc
        assert proc is not None
        deadline = time.monotonic() + grace
        hook = (pod.container.get("lifecycle") or {}).get("preStop")
        if hook and proc.poll() is None and grace > 0 and not self._stopping:
            self._pre_stop(pod, instance, hook, min(self.prestop_cap, grace))
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGTERM)
        remaining = max(deadline - time.monotonic(), min(2.0, grace))
        try:
            proc.wait(remaining if grace > 0 else 0)
        except subprocess.TimeoutExpired:
            pass
        _killpg(proc.pid, signal.SIGKILL)  # the rest of the group too
        proc.wait()

    def _pre_stop(self, pod: _Pod, instance: _Instance, hook: Mapping[str, Any], cap: float) -> None:
        if "exec" in hook:
            argv = self._argv(pod, list(hook["exec"].get("command") or []), instance.values)
            try:
                proc = subprocess.Popen(argv, cwd=pod.workdir, env=instance.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
            except OSError as exc:
                self._pod_event(pod, "Warning", "FailedPreStopHook", f"PreStopHook failed: {exc}")
                return
            with self._lock:
                pod.prestop = proc
                stopping = self._stopping
            try:
                code = proc.wait(0 if stopping else cap)
                if code != 0:
                    self._pod_event(pod, "Warning", "FailedPreStopHook",
                                    f"PreStopHook failed: command {argv!r} exited with {code}")
            except subprocess.TimeoutExpired:
                pass  # cut short: the simulator's prestop_cap
            finally:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                with self._lock:
                    pod.prestop = None
        elif "httpGet" in hook:
            self._probe(pod, {"httpGet": hook["httpGet"], "timeoutSeconds": cap})
        elif "sleep" in hook:
            pod_wait = min(float(hook["sleep"].get("seconds", 0)), cap)
            time.sleep(pod_wait)

    def _finish(self, pod: _Pod) -> None:
        """Stop the container for good and remove the pod."""
        instance = pod.current
        if instance is not None and instance.proc is not None:
            if self._stopping:
                _killpg(instance.proc.pid, signal.SIGKILL)
                instance.proc.wait()
            else:
                self._pod_event(pod, "Normal", "Killing", f"Stopping container {pod.container['name']}")
                self._stop_process(pod, instance, pod.grace)
            self._record_exit(pod, instance)
            with self._lock:
                pod.current, pod.last, pod.ended = None, instance, True
                pod.started = pod.ready = False
                pod.waiting = None
                self._refresh(pod)
        with self._lock:
            if self._pods.get((pod.namespace, pod.name)) is pod:
                del self._pods[(pod.namespace, pod.name)]
        if pod.workdir and not self._stopping:
            shutil.rmtree(pod.workdir, ignore_errors=True)

    def _kill_all(self, pod: _Pod) -> None:
        with self._lock:
            procs = [i.proc for i in pod.instances if i.proc is not None]
            if pod.prestop is not None:
                procs.append(pod.prestop)
        for proc in procs:
            _killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass



"""The ``liveml`` command line. ``build_parser()`` is shared with the ``%liveml`` magics."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from . import formatting as fmt
from . import progress
from .client import Client, LiveMLClientError
from .settings import Settings

Handler = Callable[[Client, argparse.Namespace], Any]


def _rows(items: list[dict[str, Any]], columns: list[tuple[str, Callable[[dict], Any]]]) -> str:
    table = [[title for title, _ in columns]] + [
        [str(get(item) if get(item) is not None else "") for _, get in columns] for item in items]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in table)


def _deployment_text(d: dict[str, Any]) -> str:
    st, rc = d["status"], d["runtimeConfiguration"]
    lines = [
        f"{d['name']}  ({d['apiName']})", f"  rid:          {d['rid']}",
        f"  state:        {st['state']}{' — ' + st['reason'] if st['reason'] else ''}",
        f"  ready:        {st['isReady']} ({st['readyReplicas']}/{st['desiredReplicas']} replicas)",
        f"  environment:  {d['environment']}",
        f"  release:      {(d.get('release') or {}).get('version', '-')}"
        f" (target {(d.get('targetRelease') or {}).get('version', '-')})",
        f"  profiles:     replica={d['replicaProfile']} resource={d['resourceProfile']}",
        f"  runtime:      replicas {rc['minReplicas']}..{rc['maxReplicas']}, cpu {rc['cpu']}, "
        f"memory {rc['memory']}, gpu {rc['gpu']}, threads {rc['threadCount']}",
    ]
    if rc.get("capture", "off") != "off":
        lines.append(f"  capture:      {rc['capture']}, sample {rc['captureSample']:g}, bodies up "
                     f"to {fmt.size(rc['captureMaxBytes'])} (liveml history {d['apiName']})")
    shadow = st.get("shadow")
    if shadow:
        p50 = "-" if shadow.get("p50Ms") is None else f"{shadow['p50Ms']:.1f} ms"
        p99 = "-" if shadow.get("p99Ms") is None else f"{shadow['p99Ms']:.1f} ms"
        lines.append(f"  shadow:       release {shadow['releaseVersion']} {shadow['state']}, "
                     f"{shadow['sample']:.0%} mirrored: {shadow['mirrored']} sent, "
                     f"{shadow['errors']} errors, p50 {p50}, p99 {p99} (liveml compare "
                     f"{d['apiName']})")
    for r in st["replicas"]:
        restarts = f" ({r['restarts']} restarts)" if r.get("restarts") else ""
        lines.append(f"  replica {r['nodeId']}: {r['state']} {r['health']} "
                     f"release {r['releaseVersion']}{restarts} {r['reason']}".rstrip())
    return "\n".join(lines)


def _deployments_text(items: list[dict[str, Any]]) -> str:
    return _rows(items, [
        ("NAME", lambda d: d["name"]), ("API NAME", lambda d: d["apiName"]),
        ("STATE", lambda d: d["status"]["state"]),
        ("READY", lambda d: f"{d['status']['readyReplicas']}/{d['status']['desiredReplicas']}"),
        ("ENV", lambda d: d["environment"]),
        ("RELEASE", lambda d: (d.get("release") or {}).get("version")), ("RID", lambda d: d["rid"])])


def _wait(client: Client, ref: str, out: TextIO) -> dict[str, Any]:
    from .progress import wait_with_progress

    return wait_with_progress(client, ref, file=out)


def cmd_objective(c: Client, a: argparse.Namespace) -> Any:
    if a.action == "create":
        return c.create_objective(a.name, a.namespace, a.description)
    return c.objectives(a.namespace)


def cmd_submit(c: Client, a: argparse.Namespace) -> Any:
    path = Path(a.model_file)
    if path.is_dir() or zipfile.is_zipfile(path):  # a saved pyspark.ml model, or a zip of one
        from liveml_runtime.errors import LiveMLError
        from liveml_runtime.schema import read_input_example
        from liveml_runtime.spark_model import pack

        columns = [n.strip() for n in (a.output_columns or "").split(",") if n.strip()]
        try:
            example = read_input_example(a.input_example) if a.input_example else None
            data = pack(path, example, columns or None)
        except LiveMLError as err:
            raise SystemExit(f"liveml: {err.message}") from None
        return c.submit(a.objective, data, a.name or "")
    if not path.is_file():
        raise SystemExit(f"liveml: no such model file or folder: {a.model_file}")
    return c.submit(a.objective, a.model_file, a.name or "", input_example=a.input_example)


def cmd_promote(c: Client, a: argparse.Namespace) -> Any:
    """The promoted release, plus ``previousTag``: the tag it held before."""
    before = next((r["tag"] for r in c.releases(a.objective) if r["version"] == a.version), None)
    return {**c.promote(a.objective, a.version), "previousTag": before}


def cmd_token(c: Client, a: argparse.Namespace) -> Any:
    if a.action == "show":  # what the client found (LIVEML_URL/TOKEN, or the connection file)
        return {"url": c.url, "token": c.token}
    if a.action == "list":
        return c.tokens()
    if a.action == "revoke":
        return c.revoke_token(a.id)
    seconds = None
    if a.expires_in:
        from .core.errors import LiveMLError
        from .core.timewindow import parse_duration

        try:
            seconds = int(parse_duration(a.expires_in).total_seconds())
        except LiveMLError as err:
            raise SystemExit(f"liveml: --expires-in: {err.message}") from err
    return c.create_token(a.namespace, a.scope, a.description or "", expires_in=seconds)


def cmd_whoami(c: Client, a: argparse.Namespace) -> Any:
    return c.whoami()


def cmd_deploy(c: Client, a: argparse.Namespace) -> Any:
    doc = c.deploy(a.objective, a.name, a.environment, a.replicas, a.replica_profile,
                   a.resource_profile, a.api_name, a.description or "")
    return _wait(c, doc["rid"], a.out) if a.wait else doc


def cmd_update(c: Client, a: argparse.Namespace) -> Any:
    runtime: dict[str, Any] = {}
    if a.replicas is not None:
        runtime.update(minReplicas=a.replicas, maxReplicas=a.replicas)
    for flag, key in (("min_replicas", "minReplicas"), ("max_replicas", "maxReplicas"),
                      ("cpu", "cpu"), ("memory", "memory"), ("gpu", "gpu"),
                      ("gpu_type", "gpuType"), ("thread_count", "threadCount"),
                      ("queue_size", "queueSize")):
        if getattr(a, flag) is not None:
            runtime[key] = getattr(a, flag)
    if a.env or a.unset_env:
        env = dict(c.deployment(a.deployment)["runtimeConfiguration"].get("env") or {})
        for item in a.env or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"liveml: --env takes KEY=VALUE, not {item!r}")
            env[key] = value
        for key in a.unset_env or []:
            env.pop(key, None)
        runtime["env"] = env
    runtime.update(_capture_changes(a))
    changes: dict[str, Any] = {}
    if runtime:
        changes["runtimeConfiguration"] = runtime
    if a.replica_profile:
        changes["replicaProfile"] = a.replica_profile
    if a.resource_profile:
        changes["resourceProfile"] = a.resource_profile
    if not changes:
        raise SystemExit("liveml: nothing to update; see `liveml update --help`")
    doc = c.update(a.deployment, **changes)
    return _wait(c, doc["rid"], a.out) if a.wait else doc


def _capture_changes(a: argparse.Namespace) -> dict[str, Any]:
    """The capture fields of ``liveml update`` (``--capture-max-bytes`` takes a size)."""
    from .core.errors import LiveMLError
    from .core.units import parse_memory

    out: dict[str, Any] = {}
    if a.capture is not None:
        out["capture"] = a.capture
    if a.capture_sample is not None:
        out["captureSample"] = a.capture_sample
    if a.capture_max_bytes is not None:
        try:
            out["captureMaxBytes"] = 0 if a.capture_max_bytes.strip() == "0" else \
                parse_memory(a.capture_max_bytes)
        except LiveMLError:
            raise SystemExit(f"liveml: --capture-max-bytes takes a size such as 64KiB or 1MiB, "
                             f"not {a.capture_max_bytes!r}") from None
    return out


def cmd_history(c: Client, a: argparse.Namespace) -> Any:
    """Captured queries (newest first), or all of them as one Parquet file (``--download``)."""
    window = {"since": a.since, "start": a.start, "end": a.end, "status": a.status,
              "release": a.release}
    if a.download:
        size = c.download_history(a.deployment, a.download, **window)
        return {"file": a.download, "bytes": size}
    return c.history(a.deployment, limit=a.limit, **window)


def cmd_shadow(c: Client, a: argparse.Namespace) -> Any:
    """Start (``--release``), stop (``--stop``) or show a deployment's shadow."""
    if a.stop:
        return c.stop_shadow(a.deployment)
    if a.release is None:
        return c.shadow(a.deployment)
    overrides = {k: v for k, v in (("cpu", a.cpu), ("memory", a.memory),
                                   ("threadCount", a.thread_count)) if v is not None}
    return c.start_shadow(a.deployment, a.release, sample=a.sample,
                          duration=None if a.duration in ("", "0", "none") else a.duration,
                          replicas=a.replicas, timeout=a.timeout, **overrides)


def cmd_replay(c: Client, a: argparse.Namespace) -> Any:
    """Captured queries against another release; its replicas start first (a spinner)."""
    with progress.spinner(f"replaying the captured queries of the last {a.since} against "
                          f"release {a.release}"):
        return c.replay(a.deployment, a.release, since=a.since, limit=a.limit)


def _shadow_text(doc: dict[str, Any], stopped: bool = False) -> str:
    ms = lambda v: "-" if v is None else f"{v:.1f} ms"  # noqa: E731
    until = f"until {fmt.short_time(doc['until'])}" if doc.get("until") else "until stopped"
    head = "stopped: " if stopped else ""
    return (f"{head}shadow of release {doc['releaseVersion']} (serving "
            f"{doc.get('servingVersion') or '-'}): {doc['state']}"
            f"{' - ' + doc['reason'] if doc.get('reason') else ''}\n"
            f"  {doc['sample']:.0%} of the queries, {doc['readyReplicas']}/{doc['replicas']} "
            f"replica(s) ready, {until}\n"
            + ("  runs with: " + ", ".join(f"{k} {v}" for k, v in doc["overrides"].items())
               + "\n" if doc.get("overrides") else "") +
            f"  mirrored {doc['mirrored']}, answered {doc['answered']}, errors {doc['errors']}, "
            f"skipped {doc['skipped']}\n"
            f"  latency p50/p99: shadow {ms(doc.get('p50Ms'))} / {ms(doc.get('p99Ms'))}, live "
            f"{ms(doc.get('liveP50Ms'))} / {ms(doc.get('liveP99Ms'))}\n"
            f"  next: liveml compare DEPLOYMENT")


def _compare_text(doc: dict[str, Any]) -> str:
    a, b = doc["a"], doc["b"]
    ms = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    if not doc["a"]["queries"]:
        return ("no compared queries in this window: start a shadow (liveml shadow DEPLOYMENT "
                "--release staging) and send traffic, or widen --since")
    lines = [f"{doc['queries']} queries ({doc['rows']} rows) answered by both releases "
             f"({doc['source']})", _rows([a, b], [
                 ("RELEASE", lambda s: s["version"]), ("QUERIES", lambda s: s["queries"]),
                 ("ERRORS", lambda s: s["errors"]), ("P50 MS", lambda s: ms(s.get("p50Ms"))),
                 ("P99 MS", lambda s: ms(s.get("p99Ms")))])]
    if doc["numeric"]:
        lines += ["", _rows(doc["numeric"], [
            ("OUTPUT", lambda n: n["column"]), ("MEAN |DIFF|", lambda n: f"{n['meanAbs']:.4g}"),
            ("P50", lambda n: f"{n['p50Abs']:.4g}"), ("P95", lambda n: f"{n['p95Abs']:.4g}"),
            ("MAX", lambda n: f"{n['maxAbs']:.4g}"),
            ("MEAN REL", lambda n: "-" if n.get("meanRel") is None else f"{n['meanRel']:.2%}"),
            ("MAX REL", lambda n: "-" if n.get("maxRel") is None else f"{n['maxRel']:.2%}")])]
    for cat in doc["categorical"]:
        lines += ["", f"{cat['column']}: {cat['agreement']:.1%} agreement over {cat['count']} rows"]
    if doc["topDifferences"]:
        lines += ["", "rows that differ most:", _rows(doc["topDifferences"][:5], [
            (k.upper(), functools.partial(_cell, k))
            for k in doc["topDifferences"][0] if k != "score"])]
    lines += ["", f"promote it: liveml promote OBJECTIVE {b['version']}"]
    return "\n".join(lines)


def _cell(key: str, row: dict[str, Any]) -> Any:
    return row.get(key)


def _history_text(doc: dict[str, Any]) -> str:
    if "file" in doc:
        return f"wrote {fmt.size(doc['bytes'])} to {doc['file']}"
    rows = doc["data"]

    def kept(r: dict[str, Any]) -> str:
        parts = [f"{what} {fmt.size(r[f'{what}Bytes'])} (not kept: over captureMaxBytes)"
                 for what in ("request", "response") if r[f"{what}Truncated"]]
        return "; ".join(parts)

    text = _rows(rows, [
        ("TIME", lambda r: fmt.short_time(r["time"])), ("STATUS", lambda r: r["status"]),
        ("LATENCY", lambda r: f"{r['latencyMs']:.1f} ms"), ("RELEASE", lambda r: r["release"]),
        ("NODE", lambda r: r["nodeId"]), ("REQUEST ID", lambda r: r["requestId"]),
        ("NOTE", kept)]) if rows else "no captured queries in this window (is capture on? " \
        "liveml update DEPLOYMENT --capture both)"
    if doc.get("dropped"):
        text += f"\n{doc['dropped']} record(s) dropped since the control plane started: the " \
                "capture queue was full (lower --capture-sample)"
    return text


def cmd_enable(c: Client, a: argparse.Namespace) -> Any:
    """Enable a deployment; with ``--wait``, show its progress until it serves (as deploy)."""
    doc = c.enable(a.deployment)
    return _wait(c, doc["rid"], a.out) if a.wait else doc


def cmd_logs(c: Client, a: argparse.Namespace) -> Any:
    columns = [x.strip() for x in a.columns.split(",")] if a.columns else None
    window = {"since": a.since, "start": a.start, "end": a.end}
    if a.download:
        size = c.download_logs(a.deployment, a.download, a.query or "", columns=columns, **window)
        return {"file": a.download, "bytes": size}
    page = c.logs(a.deployment, a.query or "", columns=columns, limit=a.limit, **window)
    if not a.follow:
        return page
    # follow: print what is there (oldest first), then what arrives, until Ctrl-C
    rows = list(reversed(page["data"]))
    seen = {json.dumps(r, sort_keys=True) for r in rows}
    for row in rows:
        print(json.dumps(row) if a.json else _log_line(row), flush=True)
    last = rows[-1]["time"] if rows and "time" in rows[-1] else None
    while True:
        time.sleep(1.0)
        fresh = c.logs(a.deployment, a.query or "", columns=columns, limit=1000,
                       start=last or a.start, since=None if last else a.since)["data"]
        for row in reversed(fresh):
            key = json.dumps(row, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            print(json.dumps(row) if a.json else _log_line(row), flush=True)
            last = row.get("time", last)


#: Columns a log line shows in fixed places; others follow the message as ``key=value``.
LOG_PLACES = ("time", "level", "node_id", "message")
#: The store's default columns (observability.logstore.DEFAULT_COLUMNS): the line leaves out
#: ``logger`` then, since the node and the message say where a record comes from.
DEFAULT_LOG_COLUMNS = {"time", "level", "node_id", "logger", "message"}


def _log_line(row: dict[str, Any], node_width: int = 14) -> str:
    """One record as fixed columns: ``2026-12-01 08:12:03  INFO   node      message  k=v``."""
    parts = []
    if "time" in row:
        parts.append(fmt.short_time(row["time"]))
    if "level" in row:
        parts.append(f"{row['level'] or '':<7}")
    if "node_id" in row:
        parts.append(f"{row['node_id'] or '':<{node_width}}")
    if "message" in row:
        parts.append(str(row["message"]))
    skip = set(LOG_PLACES) | ({"logger"} if set(row) == DEFAULT_LOG_COLUMNS else set())
    parts += [f"{k}={'' if v is None else v}" for k, v in row.items() if k not in skip]
    return "  ".join(parts).rstrip()


def _log_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Records (oldest first) as lines, the node column as wide as its widest value here."""
    width = max([14, *(len(str(r.get("node_id") or "")) for r in rows)])
    return [_log_line(r, width) for r in rows]


def cmd_metrics(c: Client, a: argparse.Namespace) -> Any:
    rows = c.metrics(a.deployment, a.kind, a.since, a.start, a.end, a.node)
    if a.plot:
        from .observability.plots import plot_metrics

        fig = plot_metrics(rows, title=f"{a.deployment}: {a.kind or 'all'} metrics")
        fig.savefig(a.plot, dpi=100)
        print(f"wrote {a.plot} ({len(rows)} samples)", file=sys.stderr)
    return rows


def cmd_query(c: Client, a: argparse.Namespace) -> Any:
    text = a.data if a.data is not None else Path(a.file).read_text()
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"liveml: the query data is not JSON: {exc}") from exc
    return c.query(a.deployment, body, v2=a.v2)


COMMANDS: dict[str, Handler] = {
    "objective": cmd_objective,
    "submit": cmd_submit,
    "release": lambda c, a: c.release(a.objective, a.submission, a.version, a.note, a.tag),
    "releases": lambda c, a: c.releases(a.objective),
    "submissions": lambda c, a: c.submissions(a.objective),
    "promote": cmd_promote,
    "deploy": cmd_deploy,
    "ls": lambda c, a: c.deployments(a.namespace),
    "status": lambda c, a: c.deployment(a.deployment),
    "wait": lambda c, a: _wait(c, a.deployment, a.out),
    "query": cmd_query,
    "api-name": lambda c, a: c.set_api_name(a.deployment, a.api_name),
    "update": cmd_update,
    "logs": cmd_logs,
    "metrics": cmd_metrics,
    "history": cmd_history,
    "shadow": cmd_shadow,
    "replay": cmd_replay,
    "compare": lambda c, a: c.compare(a.deployment, since=a.since, start=a.start, end=a.end,
                                      source=a.source, release=a.release),
    "events": lambda c, a: c.events(a.deployment, a.limit),
    "disable": lambda c, a: c.disable(a.deployment),
    "enable": cmd_enable,
    "delete": lambda c, a: c.delete(a.deployment),
    "token": cmd_token,
    "whoami": cmd_whoami,
    "profiles": lambda c, a: c.profiles(),
}


def _type(c: dict[str, Any]) -> str:
    """``double``, ``decimal(38,2)``, ``array<integer>``; ``?`` marks a nullable column."""
    kind = c.get("type", "any")
    if kind == "decimal":
        kind = f"decimal({c.get('precision', 38)},{c.get('scale', 18)})"
    elif kind == "array":
        kind = f"array<{c.get('items') or 'any'}>"
    return kind + ("" if c.get("required", True) else "?")


def _ports(ports: list[dict[str, Any]]) -> str:
    """A model API's inputs or outputs: ``input_df (house-location:string, bedrooms:double)``."""
    out = []
    for p in ports:
        if p.get("kind", "tabular") == "tabular":
            cols = ", ".join(f"{c['name']}:{_type(c)}" for c in p.get("columns") or [])
            out.append(f"{p['name']} (table: {cols or 'any columns'})")
        else:
            default = "" if p.get("required") or p.get("default") is None else \
                f" = {p['default']!r}"
            out.append(f"{p['name']}:{p.get('type', 'any')}{default}")
    return "; ".join(out) or "-"


def _submission_text(d: dict[str, Any], objective: str = "OBJECTIVE") -> str:
    reqs = ", ".join(f"{k} {v}" for k, v in sorted((d.get("requirements") or {}).items()))
    example = (d.get("api") or {}).get("inputExample")
    tested = f"passed on the {len(example['rows'])} rows of the input example" if example else \
        "passed"
    return "\n".join([
        f"submission {d['name']}  ({d['rid']})",
        f"  adapter:    {d['adapter']}",
        f"  inputs:     {_ports(d['api'].get('inputs', []))}",
        f"  outputs:    {_ports(d['api'].get('outputs', []))}",
        f"  artifact:   {fmt.size(d.get('artifactBytes'))}, sha256 {d['artifactSha256'][:12]}…",
        f"  python:     {d.get('python') or '-'}; requires {reqs or '-'}",
        f"  self-test:  {tested}",
        f"  submitted:  {fmt.short_time(d['createdAt'])} UTC by {d.get('createdBy') or '-'}",
        f"  next:       liveml release {objective} {d['name']} --version VERSION --tag staging"])


def _release_text(d: dict[str, Any]) -> str:
    return (f"release {d['version']}  ({d['rid']})\n"
            f"  tag:         {d['tag'] or '-'}\n"
            f"  submission:  {d['submissionRid']}\n"
            f"  created:     {fmt.short_time(d['createdAt'])} UTC"
            + (f"\n  note:        {d['note']}" if d.get("note") else ""))


def render(command: str, doc: Any, args: argparse.Namespace | None = None) -> str:
    """Human-readable text for a command's result (``query``: its JSON, indented)."""
    if command == "query":
        return json.dumps(doc, indent=2)
    if command == "submit":
        return _submission_text(doc, getattr(args, "objective", "OBJECTIVE"))
    if command == "release":
        return _release_text(doc)
    if command == "promote":
        was = doc.get("previousTag")
        return f"{doc['version']} is now {doc['tag']}" + \
            (f" (was {was})" if was and was != doc["tag"] else
             " (it was already)" if was else " (was untagged)")
    if command == "objective" and isinstance(doc, dict):
        return (f"objective {doc['name']}  (namespace {doc['namespace']})\n"
                f"  rid:  {doc['rid']}\n"
                f"  next: liveml submit {doc['name']} MODEL.joblib --name NAME")
    if command == "ls":
        return _deployments_text(doc) if doc else "no live deployments (create one: liveml deploy)"
    if command in ("status", "deploy", "wait", "disable", "enable", "api-name", "update") and \
            "status" in doc:
        return _deployment_text(doc)
    if command == "logs":
        if "file" in doc:
            return f"wrote {fmt.size(doc['bytes'])} to {doc['file']}"
        lines = _log_lines(list(reversed(doc["data"])))  # the page is newest first
        more = "\n(more: narrow the window or raise --limit)" if doc.get("nextPageToken") else ""
        return ("\n".join(lines) if lines else "no log records in this window") + more
    if command == "history":
        return _history_text(doc)
    if command == "shadow":
        return _shadow_text(doc, stopped=bool(getattr(args, "stop", False)))
    if command in ("compare", "replay"):
        return _compare_text(doc)
    if command == "metrics":
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in doc:
            latest[(row["nodeId"], row["name"])] = row
        return _rows(sorted(latest.values(), key=lambda r: (r["kind"], r["nodeId"], r["name"])), [
            ("KIND", lambda r: r["kind"]), ("NODE", lambda r: r["nodeId"]),
            ("METRIC", lambda r: r["name"]), ("LATEST", lambda r: fmt.quantity(r["value"], r["unit"])),
            ("AT", lambda r: fmt.short_time(r["time"]))]) \
            if doc else "no samples in this window"
    if command == "events":
        return _rows(doc, [("TIME", lambda e: e["at"][:19]), ("KIND", lambda e: e["kind"]),
                           ("MESSAGE", lambda e: e["message"])]) if doc else "no events"
    if command == "profiles":
        return "replica profiles\n" + _rows(doc["replicaProfiles"], [
            ("NAME", lambda p: p["name"]), ("MIN", lambda p: p["minReplicas"]),
            ("MAX", lambda p: p["maxReplicas"]), ("DESCRIPTION", lambda p: p["description"])]) + \
            "\n\nresource profiles\n" + _rows(doc["resourceProfiles"], [
                ("NAME", lambda p: p["name"]), ("CPU", lambda p: p["cpu"]),
                ("MEMORY", lambda p: p["memory"]), ("GPU", lambda p: p["gpu"] or ""),
                ("GPU TYPE", lambda p: p["gpuType"]), ("DESCRIPTION", lambda p: p["description"])])
    if command == "objective" and isinstance(doc, list):
        return _rows(doc, [("NAME", lambda o: o["name"]), ("NAMESPACE", lambda o: o["namespace"]),
                           ("RID", lambda o: o["rid"])]) if doc else "no objectives"
    if command == "releases":
        return _rows(doc, [("VERSION", lambda r: r["version"]), ("TAG", lambda r: r["tag"]),
                           ("NOTE", lambda r: r["note"]), ("CREATED", lambda r: r["createdAt"])])
    if command == "submissions":
        return _rows(doc, [("NAME", lambda r: r["name"]), ("RID", lambda r: r["rid"]),
                           ("ADAPTER", lambda r: r["adapter"].rsplit(".", 1)[-1])])
    if command == "token" and "url" in doc:  # token show [--url]
        return f"{doc['url']}\n{doc['token']}" if getattr(args, "url", False) else doc["token"]
    if command == "token" and getattr(args, "action", "") == "list":
        return _rows(doc, [("ID", lambda t: t["id"]), ("SCOPE", lambda t: t["scope"]),
                           ("NAMESPACE", lambda t: t["namespace"] or "all"),
                           ("EXPIRES", lambda t: t["expiresAt"] or "never"),
                           ("DESCRIPTION", lambda t: t["description"])]) if doc else "no tokens"
    if command == "token" and getattr(args, "action", "") == "revoke":
        return f"revoked token {doc['id']}"
    if command == "token":
        expiry = f"expires {doc['expiresAt']}" if doc.get("expiresAt") else "no expiry"
        return f"{doc['token']}\n(scope {doc['scope']}, namespace {doc['namespace'] or 'all'}, " \
               f"{expiry}; shown once: keep it safe)"
    if command == "whoami":
        return f"{doc['name']} (scope {doc['scope']}, namespace {doc['namespace'] or 'all'}, " \
               f"token expires {doc.get('expiresAt') or 'never'}; backend {doc['backend']})"
    if command == "delete":
        return f"deleted {doc['rid']}"
    return json.dumps(doc, indent=2)


def add_settings_flags(sp: argparse.ArgumentParser) -> None:
    """One flag per ``Settings`` option, its default the ``LIVEML_*`` environment's value."""
    kube = sp.add_argument_group("Kubernetes backend (--backend kubernetes)")
    for o in Settings.options():
        group = kube if o.kubernetes else sp
        try:
            default = o.initial()
        except ValueError as exc:  # a bad LIVEML_* value: `liveml server` says which
            default = exc
        kind: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if o.kind is bool \
            else {"type": o.kind, "choices": o.choices or None}
        group.add_argument(*o.flags, dest=o.name, default=default, help=o.describe(), **kind)


def server_settings(args: argparse.Namespace) -> Settings:
    """The ``Settings`` of a parsed ``liveml server`` command line (``ValueError``: a bad one)."""
    values = {o.name: getattr(args, o.name) for o in Settings.options()}
    for value in values.values():
        if isinstance(value, ValueError):  # a LIVEML_* variable no flag replaced
            raise value
    return Settings(**values)


def _window_flags(sp: argparse.ArgumentParser) -> None:
    """--since, or --start and --end: the time window of a read (logs, metrics, history,
    compare)."""
    sp.add_argument("--since", help="a window back from now: 15m, 1h (default), 7d")
    sp.add_argument("--start", help="ISO time, e.g. 2026-11-26T10:00:00Z")
    sp.add_argument("--end", help="ISO time")


def build_parser(prog: str = "liveml") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Live model deployments from a notebook.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        if name != "server":
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    sp = add("server", "run the control plane (REST API, controller, gateway)")
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    sp.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    add_settings_flags(sp)

    sp = add("objective", "create or list modeling objectives")
    osub = sp.add_subparsers(dest="action", required=True)
    oc = osub.add_parser("create", help="create an objective")
    oc.add_argument("name")
    oc.add_argument("--namespace", default="default")
    oc.add_argument("--description", default="")
    oc.add_argument("--json", action="store_true")
    ol = osub.add_parser("list", help="list objectives")
    ol.add_argument("--namespace")
    ol.add_argument("--json", action="store_true")

    sp = add("submit", "submit a model file (joblib or pickle), or a saved Spark model folder "
                       "or zip, to an objective")
    sp.add_argument("objective")
    sp.add_argument("model_file", metavar="MODEL",
                    help="a joblib/pickle file, or a pyspark.ml model saved with .save(path)")
    sp.add_argument("--name")
    sp.add_argument("--input-example", metavar="FILE",
                    help="example input rows, JSON (a list of objects, or {\"requestData\": "
                    "[...]}) or CSV (.csv): they declare the model's input columns and types, "
                    "and its self-test runs on them; needed for a model that declares no inputs "
                    "(no api(), no feature_names_in_)")
    sp.add_argument("--output-columns", metavar="A,B",
                    help="Spark models: the model's columns to answer with besides the inputs "
                         "(default: prediction, and probability for classifiers)")

    sp = add("release", "release a submission with a version (and a tag)")
    sp.add_argument("objective")
    sp.add_argument("submission", help="submission name or RID")
    sp.add_argument("--version", required=True)
    sp.add_argument("--note", default="")
    sp.add_argument("--tag", type=str.lower, choices=["staging", "production"])

    for name, help in (("releases", "list an objective's releases"),
                       ("submissions", "list an objective's submissions")):
        add(name, help).add_argument("objective")

    sp = add("promote", "mark a release as production")
    sp.add_argument("objective")
    sp.add_argument("version")

    sp = add("deploy", "create a live deployment that follows a release tag")
    sp.add_argument("objective")
    sp.add_argument("--name", required=True)
    sp.add_argument("--environment", type=str.lower, choices=["staging", "production"],
                    default="production")
    sp.add_argument("--replicas", type=int)
    sp.add_argument("--replica-profile", default="default")
    sp.add_argument("--resource-profile", default="default")
    sp.add_argument("--api-name")
    sp.add_argument("--description")
    sp.add_argument("--wait", action="store_true", help="show progress until ready")

    sp = add("ls", "list live deployments")
    sp.add_argument("--namespace")
    for name, help in (("status", "show a deployment's status"),
                       ("wait", "wait until a deployment is ready"),
                       ("disable", "stop a deployment, keeping its RID"),
                       ("enable", "start a disabled deployment on its latest release"),
                       ("delete", "delete a deployment for good")):
        sp = add(name, help)
        sp.add_argument("deployment", help="RID, API name or name")
        if name == "enable":
            sp.add_argument("--wait", action="store_true", help="show progress until ready")

    sp = add("query", "send an inference request")
    sp.add_argument("deployment", help="RID, API name or name")
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="JSON: rows (v1) or an object (v1 full body, or v2)")
    src.add_argument("--file", help="a file with that JSON")
    sp.add_argument("--v2", action="store_true", help="multi I/O endpoint")

    sp = add("api-name", "change a deployment's API name")
    sp.add_argument("deployment")
    sp.add_argument("api_name")

    sp = add("update", "change a deployment's profiles or runtime configuration (re-rolls "
                       "replicas with no downtime when needed)")
    sp.add_argument("deployment")
    count = sp.add_mutually_exclusive_group()
    count.add_argument("--replicas", type=int, help="a fixed replica count")
    count.add_argument("--min-replicas", type=int)
    sp.add_argument("--max-replicas", type=int)
    sp.add_argument("--replica-profile")
    sp.add_argument("--resource-profile")
    sp.add_argument("--cpu", type=float)
    sp.add_argument("--memory", help="e.g. 512MiB, 2GiB")
    sp.add_argument("--gpu", type=int)
    sp.add_argument("--gpu-type")
    sp.add_argument("--thread-count", type=int)
    sp.add_argument("--queue-size", type=int)
    sp.add_argument("--env", action="append", metavar="KEY=VALUE", help="set (repeatable)")
    sp.add_argument("--unset-env", action="append", metavar="KEY", help="remove (repeatable)")
    sp.add_argument("--capture", choices=["off", "request", "response", "both"],
                    help="inference history: which bodies each captured query keeps (failed "
                         "queries are always captured while it is on)")
    sp.add_argument("--capture-sample", type=float, metavar="FRACTION",
                    help="the fraction of successful queries captured, 0 to 1")
    sp.add_argument("--capture-max-bytes", metavar="SIZE",
                    help="a body over this size is not kept (a truncation flag instead), e.g. "
                         "64KiB")
    sp.add_argument("--wait", action="store_true", help="show progress until rolled out")

    sp = add("history", "show a deployment's captured queries (inference history), newest "
                        "first, or download them as Parquet")
    sp.add_argument("deployment")
    _window_flags(sp)
    sp.add_argument("--status", help="2xx, 4xx, 5xx, error or a code such as 404")
    sp.add_argument("--release", metavar="VERSION", help="only queries this release answered")
    sp.add_argument("--limit", type=int, default=100)
    sp.add_argument("--download", metavar="FILE.parquet",
                    help="write every matching record to one Parquet file")

    sp = add("shadow", "mirror a sample of a deployment's live queries to another release "
                       "(--release), show the shadow, or stop it (--stop)")
    sp.add_argument("deployment")
    sp.add_argument("--release", help="staging, production or a release version")
    sp.add_argument("--sample", type=float, default=1.0, metavar="FRACTION",
                    help="the fraction of live queries mirrored, 0 to 1 (default 1)")
    sp.add_argument("--duration", default="1h",
                    help="how long it runs: 15m, 1h (default), 1d; none: until stopped")
    sp.add_argument("--replicas", type=int, default=1, help="replicas of the shadow release")
    sp.add_argument("--timeout", type=float, default=30.0,
                    help="seconds the shadow may take per query (its failures only count)")
    sp.add_argument("--cpu", type=float, help="vCPU per shadow replica (default: the "
                                              "deployment's)")
    sp.add_argument("--memory", help="memory per shadow replica, e.g. 2GiB")
    sp.add_argument("--thread-count", type=int, help="model calls at once per shadow replica")
    sp.add_argument("--stop", action="store_true", help="stop the shadow")

    sp = add("compare", "compare the serving release with the shadow (or a replay) on the "
                        "same queries")
    sp.add_argument("deployment")
    _window_flags(sp)
    sp.add_argument("--source", choices=["shadow", "replay"], default="shadow")
    sp.add_argument("--release", metavar="VERSION",
                    help="the other release (default: the newest shadow or replay's)")

    sp = add("replay", "run a deployment's captured queries against another release (in a "
                       "short-lived pool) and compare")
    sp.add_argument("deployment")
    sp.add_argument("--release", required=True, help="staging, production or a release version")
    sp.add_argument("--since", default="1h", help="the captured queries of this window")
    sp.add_argument("--limit", type=int, default=1000, help="at most this many, the newest")

    sp = add("events", "show a deployment's events (rollouts, scaling, failures)")
    sp.add_argument("deployment")
    sp.add_argument("--limit", type=int, default=50)

    sp = add("logs", "search a deployment's service logs: the newest --limit records, oldest "
                     "first (the newest at the bottom, as tail prints)")
    sp.add_argument("deployment")
    sp.add_argument("--query", "-q", help='e.g. tags.node_id:NODE AND level:ERROR, "free text"')
    _window_flags(sp)
    sp.add_argument("--columns", help="comma-separated, e.g. time,level,node_id,message")
    sp.add_argument("--limit", type=int, default=100)
    sp.add_argument("--download", metavar="FILE", help="write every matching record to FILE")
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing new records")

    sp = add("metrics", "show a deployment's host, container and request metrics")
    sp.add_argument("deployment")
    sp.add_argument("--kind", choices=["host", "container", "requests"])
    _window_flags(sp)
    sp.add_argument("--node", help="only this replica (node id)")
    sp.add_argument("--plot", metavar="FILE.png", help="draw them with matplotlib")

    sp = add("token", "create, list or revoke API tokens, or show the one this CLI uses")
    tsub = sp.add_subparsers(dest="action", required=True)
    ts = tsub.add_parser("show", help="print the token this CLI uses (LIVEML_TOKEN, else the "
                                      "connection file in LIVEML_HOME); --url: the URL first")
    ts.add_argument("--url", action="store_true", help="print the URL on a line before it")
    ts.add_argument("--json", action="store_true", help='{"url": ..., "token": ...}')
    tc = tsub.add_parser("create", help="create a token (shown once)")
    tc.add_argument("--namespace", help="its namespace (default: every namespace; admins only)")
    tc.add_argument("--scope", choices=["query", "read", "manage"], default="query",
                    help="query: inference only; read: + read deployments, objectives, logs, "
                         "events, metrics (env values masked); manage: + changes (with no "
                         "--namespace: admin)")
    tc.add_argument("--expires-in", metavar="DURATION",
                    help="it stops working after this long: 30d, 12h, 90m")
    tc.add_argument("--description")
    tc.add_argument("--json", action="store_true")
    tl = tsub.add_parser("list", help="tokens you may manage (admin: all; manage: your "
                                      "namespace's); never their secrets")
    tl.add_argument("--json", action="store_true")
    tr = tsub.add_parser("revoke", help="revoke a token: it gets 401 at once")
    tr.add_argument("id", help="its ID (`liveml token list`)")
    tr.add_argument("--json", action="store_true")
    add("whoami", "who this CLI's token is: scope, namespace, expiry")

    add("profiles", "list replica and resource profiles")
    add("panel", "(notebook only) deployments, details and a create form as widgets")
    add("releases-panel", "(notebook only) an objective's releases as widgets").add_argument(
        "objective")
    return p


def run(argv: list[str], out: TextIO | None = None, client: Client | None = None) -> Any:
    """Parse and run one command; return its result (raises on errors)."""
    args = build_parser().parse_args(argv)
    args.out = out or sys.stderr
    if args.command in ("panel", "releases-panel"):
        raise SystemExit(f"liveml: {args.command} runs in a notebook: %liveml {args.command}")
    if args.command == "server":
        from liveml_runtime.__main__ import run_loop

        from .server import serve

        try:
            run_loop(serve(args.host, args.port, settings=server_settings(args)))
        except ValueError as exc:  # a bad setting (e.g. --replica-user): say it, no traceback
            raise SystemExit(f"liveml server: {exc}") from None
        return None
    return COMMANDS[args.command](client or Client(), args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        doc = run(argv)
    except LiveMLClientError as err:
        if getattr(args, "json", False):
            print(json.dumps(err.envelope, indent=2))
        print(f"liveml: {err}", file=sys.stderr)
        errtype = err.parameters.get("errorType")
        if errtype:
            print(f"  {json.dumps(errtype)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if doc is not None:
        try:
            print(json.dumps(doc, indent=2) if args.json else render(args.command, doc, args),
                  flush=True)
        except BrokenPipeError:  # `liveml submit ... | head -2`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One look for liveml's HTML in Jupyter: cards, tables, errors and notes.

Every output carries its own small stylesheet built on JupyterLab's CSS variables (with fallbacks
for other front ends), so it follows the light and dark themes. Numbers are readable (thousands
separators, fixed decimals for large values, sizes in MiB/GiB), times have no microseconds, and
RIDs show short with the full RID on hover.

``Frame`` is a ``pandas.DataFrame`` that renders this way; liveml's notebook API returns it for
tables (releases, logs, events, predictions), so everything pandas does still works on it.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from html import escape
from typing import Any

import pandas as pd

from . import formatting as fmt

STYLE = """<style>
.lm-out{font-family:var(--jp-ui-font-family,system-ui,sans-serif);
  font-size:var(--jp-ui-font-size1,13px);color:var(--jp-ui-font-color1,#212121);line-height:1.45}
.lm-out .lm-table{border-collapse:collapse;margin:4px 0;border:none;font-size:inherit;
  color:inherit}
.lm-out .lm-table th,.lm-out .lm-table td{padding:3px 12px 3px 6px;text-align:left;
  border:none;border-bottom:1px solid var(--jp-border-color2,#e0e0e0);white-space:nowrap;
  vertical-align:top}
.lm-out .lm-table th{font-weight:600;color:var(--jp-ui-font-color2,#616161);
  border-bottom:1px solid var(--jp-border-color1,#bdbdbd)}
.lm-out .lm-table td.lm-num{text-align:right;font-variant-numeric:tabular-nums}
.lm-out .lm-table th.lm-num{text-align:right}
.lm-out .lm-table td.lm-wrap{white-space:pre-wrap;word-break:break-word;min-width:20em;
  max-width:60em}
.lm-out .lm-table tr:hover td{background:var(--jp-layout-color2,#f5f5f5)}
.lm-out .lm-card{border:1px solid var(--jp-border-color2,#e0e0e0);border-radius:4px;
  padding:8px 12px;margin:4px 0;background:var(--jp-layout-color1,#fff);max-width:60em}
.lm-out .lm-title{font-weight:600;font-size:var(--jp-ui-font-size2,15px);margin-right:6px}
.lm-out .lm-muted{color:var(--jp-ui-font-color2,#616161)}
.lm-out .lm-fields{display:grid;grid-template-columns:max-content auto;gap:1px 14px;margin:6px 0}
.lm-out .lm-fields>span:nth-child(odd){color:var(--jp-ui-font-color2,#616161)}
.lm-out code,.lm-out .lm-id{font-family:var(--jp-code-font-family,monospace);
  font-size:var(--jp-code-font-size,12px);background:var(--jp-layout-color2,#f5f5f5);
  padding:0 3px;border-radius:2px}
.lm-out .lm-badge{display:inline-block;padding:0 7px;border-radius:9px;font-weight:600;
  font-size:var(--jp-ui-font-size0,11px);line-height:18px;color:#fff;vertical-align:1px;
  background:var(--jp-layout-color4,#757575)}
.lm-out .lm-ok{background:var(--jp-success-color1,#388e3c)}
.lm-out .lm-warn{background:var(--jp-warn-color1,#f57c00)}
.lm-out .lm-bad{background:var(--jp-error-color1,#d32f2f)}
.lm-out .lm-info{background:var(--jp-brand-color1,#1976d2)}
.lm-out .lm-note{border-left:3px solid var(--jp-brand-color1,#1976d2);padding:4px 10px;
  margin:4px 0;background:var(--jp-layout-color2,#f5f5f5)}
.lm-out .lm-note.lm-note-ok{border-left-color:var(--jp-success-color1,#388e3c)}
.lm-out .lm-note.lm-note-warn{border-left-color:var(--jp-warn-color1,#f57c00)}
.lm-out .lm-note.lm-note-error{border-left-color:var(--jp-error-color1,#d32f2f)}
.lm-out .lm-note.lm-note-error b{color:var(--jp-error-color1,#d32f2f)}
.lm-out h4{margin:8px 0 2px 0;font-size:var(--jp-ui-font-size1,13px)}
</style>"""

STATE_CLASS = {"ACTIVE": "lm-ok", "READY": "lm-ok", "HEALTHY": "lm-ok", "COMPLETE": "lm-ok",
               "PRODUCTION": "lm-ok", "DEGRADED": "lm-warn", "STARTING": "lm-info",
               "PROGRESSING": "lm-info", "STAGING": "lm-info", "DRAINING": "lm-warn",
               "FAILED": "lm-bad", "UNHEALTHY": "lm-bad", "DISABLED": "lm-idle"}

# column headers of liveml's own tables (user data keeps its column names)
LABELS = {"apiName": "API name", "rid": "RID", "nodeId": "node", "node_id": "node",
          "createdAt": "created", "createdBy": "by", "updatedAt": "updated", "at": "time",
          "objectiveRid": "objective RID", "submissionRid": "submission RID", "releaseVersion": "release",
          "artifactSha256": "artifact", "artifactBytes": "size", "modelUuid": "model UUID",
          "cpu": "vCPU", "gpu": "GPU", "gpuType": "GPU type", "minReplicas": "min replicas",
          "maxReplicas": "max replicas", "threadCount": "threads"}
BADGES = {"tag", "state", "health"}  # columns whose known values show as badges
WRAP = {"message", "reason", "note", "description", "traceback", "fields", "detail"}
HASH = re.compile(r"^(?:[0-9a-f]{64}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
SIZE_COLUMNS = {"artifactBytes", "bytes", "memory_bytes"}


def page(*parts: str) -> str:
    """Wrap HTML parts in liveml's look (a stylesheet and the ``lm-out`` scope)."""
    return f"{STYLE}<div class='lm-out'>{''.join(parts)}</div>"


def badge(state: str | None) -> str:
    if not state:
        return ""
    return f"<span class='lm-badge {STATE_CLASS.get(state, '')}'>{escape(state)}</span>"


def short_id(rid: str) -> str:
    """A RID as its last eight characters, the full RID on hover."""
    return f"<span class='lm-id' title='{escape(rid)}'>{escape(fmt.short_rid(rid))}</span>"


def label(column: str) -> str:
    if column in LABELS:
        return LABELS[column]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", column).replace("_", " ").lower()


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (list, dict, tuple)) else False
    except (TypeError, ValueError):
        return False


def _float_format(values: Iterable[Any]) -> str:
    finite = [abs(float(v)) for v in values if isinstance(v, (int, float)) and not
              isinstance(v, bool) and math.isfinite(float(v))]
    return "money" if finite and max(finite) >= 1000 else "plain"


def cell(value: Any, column: str = "", floats: str = "plain") -> tuple[str, str]:
    """(HTML, css class) of one table cell."""
    if _is_missing(value):
        return "", ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), ""
    if isinstance(value, (int,)) and not isinstance(value, bool) or \
            hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu":
        number = int(value)
        text = fmt.size(number) if column in SIZE_COLUMNS else f"{number:,}"
        return text, "lm-num"
    if isinstance(value, float) or hasattr(value, "dtype") and getattr(value.dtype, "kind",
                                                                       "") == "f":
        real = float(value)
        if column in SIZE_COLUMNS:
            return fmt.size(real), "lm-num"
        return (fmt.money(real) if floats == "money" else fmt.decimal(real)), "lm-num"
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return escape(value.strftime("%Y-%m-%d %H:%M:%S")), ""
    if isinstance(value, Mapping):
        text = ", ".join(f"{k}={v if not isinstance(v, (dict, list)) else json.dumps(v)}"
                         for k, v in value.items())
        return escape(text), "lm-wrap" if len(text) > 60 else ""
    if isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
        return escape(text), "lm-wrap" if len(text) > 60 else ""
    text = str(value)
    if column in BADGES and text in STATE_CLASS:
        return badge(text), ""
    if text.startswith("ri.") and " " not in text or HASH.match(text):
        return short_id(text), ""
    if TIME.match(text):
        return f"<span title='{escape(text)}'>{escape(fmt.short_time(text))}</span>", ""
    wrap = "lm-wrap" if column in WRAP or len(text) > 80 or "\n" in text else ""
    return escape(text), wrap


def table(records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
          labels: bool = True, hide_empty: bool = True, max_rows: int = 60,
          raw: Collection[str] = ()) -> str:
    """An HTML table of records (liveml's look; no stylesheet: wrap it in ``page``).

    Columns in ``raw`` hold HTML already (badges); empty columns are left out with ``hide_empty``.
    """
    if columns is None:
        seen: dict[str, None] = {}
        for r in records:
            seen.update(dict.fromkeys(r))
        columns = list(seen)
    if hide_empty:
        columns = [c for c in columns if any(not _is_missing(r.get(c)) and r.get(c) != ""
                                             for r in records)] or list(columns)
    floats = {c: _float_format(r.get(c) for r in records) for c in columns}
    shown = list(records[:max_rows]) if len(records) > max_rows else list(records)
    body = []
    for r in shown:
        cells = [(str(r.get(c) or ""), "") if c in raw else cell(r.get(c), c, floats[c])
                 for c in columns]
        body.append("<tr>" + "".join(f"<td class='{css}'>{html}</td>" for html, css in cells)
                    + "</tr>")
    numeric = {c for c in columns if c not in raw and any(not _is_missing(r.get(c)) for r in shown)
               and all(cell(r.get(c), c)[1] == "lm-num" for r in shown
                       if not _is_missing(r.get(c)))}
    head = "".join(f"<th class='{'lm-num' if c in numeric else ''}'>"
                   f"{escape(label(c) if labels else str(c))}</th>" for c in columns)
    more = (f"<div class='lm-muted'>… {len(records) - max_rows:,} more row(s) of "
            f"{len(records):,}</div>") if len(records) > max_rows else ""
    return f"<table class='lm-table'><thead><tr>{head}</tr></thead>" \
           f"<tbody>{''.join(body)}</tbody></table>{more}"


def fields(items: Iterable[tuple[str, str]]) -> str:
    """Label/value pairs (values are HTML) as a two-column grid."""
    return "<div class='lm-fields'>" + "".join(
        f"<span>{escape(k)}</span><span>{v}</span>" for k, v in items) + "</div>"


def card(title: str, state: str | None = None, subtitle: str = "",
         items: Iterable[tuple[str, str]] = (), body: str = "") -> str:
    """A titled box: a state badge, a muted subtitle, label/value pairs, then any HTML."""
    pairs = list(items)
    return (f"<div class='lm-card'><span class='lm-title'>{escape(title)}</span>{badge(state)}"
            f"{' <span class=lm-muted>' + subtitle + '</span>' if subtitle else ''}"
            f"{fields(pairs) if pairs else ''}{body}</div>")


def note(text: str, kind: str = "info") -> str:
    """A one-line message (text is HTML): ``info``, ``ok``, ``warn`` or ``error``."""
    return f"<div class='lm-note lm-note-{kind}'>{text}</div>"


def error_page(err: BaseException) -> str:
    """An error (``error``) as a page of its own: a cell's output or a widget's message."""
    return page(error(err))


def error(err: BaseException) -> str:
    """An error as a note: the envelope's name and message, the input or column it names."""
    name = getattr(err, "name", None)
    params = getattr(err, "parameters", None)
    if name and isinstance(params, dict):
        params = dict(params)
        message = params.pop("message", "")
        detail = params.pop("errorType", None)
        status = getattr(err, "status", 0)
        extra = {**(detail or {}), **params}
        rows = table([{"field": k, "value": v if isinstance(v, str) else json.dumps(v)}
                      for k, v in extra.items()], hide_empty=False) if extra else ""
        head = f"<b>{escape(name)}</b>{f' ({status})' if status else ''}: {escape(message)}"
        return note(head + rows, "error")
    return note(f"<b>{escape(type(err).__name__)}</b>: {escape(str(err))}", "error")


class Record(dict):
    """An API answer (a dict, as before) that a notebook shows as a card or a line."""

    def __init__(self, doc: Mapping[str, Any], html: str, text: str) -> None:
        super().__init__(doc)
        self._html, self._text = html, text

    def _repr_html_(self) -> str:
        return page(self._html)

    def __repr__(self) -> str:
        return self._text


class Outputs(dict):
    """A multi-output answer (output name -> DataFrame or value), each shown under its name."""

    def _repr_html_(self) -> str:
        return page(outputs_html(self))


def outputs_html(outputs: Mapping[str, Any]) -> str:
    """Each output under its name: tables as tables, values as code."""
    parts = []
    for name, value in outputs.items():
        if isinstance(value, pd.DataFrame):
            body = table(value.to_dict(orient="records"), [str(c) for c in value.columns],
                         labels=False, hide_empty=False)
        else:
            body = f"<code>{escape(json.dumps(value, default=str))}</code>"
        parts.append(f"<h4>{escape(str(name))}</h4>{body}")
    return "".join(parts)


class Frame(pd.DataFrame):
    """A DataFrame shown in liveml's look; ``attrs['liveml_labels']`` relabels liveml's fields."""

    @property
    def _constructor(self) -> type[Frame]:
        return Frame

    def _repr_html_(self) -> str:
        labels = bool(self.attrs.get("liveml_labels"))
        if self.empty and not len(self.columns):
            return page(note(escape(self.attrs.get("liveml_empty", "no rows"))))
        records = [dict(zip(map(str, self.columns), row))
                   for row in self.itertuples(index=False, name=None)]
        if self.empty:
            return page(table([], [str(c) for c in self.columns], labels, hide_empty=False),
                        note(escape(self.attrs.get("liveml_empty", "no rows"))))
        return page(table(records, [str(c) for c in self.columns], labels=labels,
                          hide_empty=labels))


def frame(rows: Any, columns: Sequence[str] | None = None, labels: bool = True,
          empty: str = "no rows") -> Frame:
    """liveml's records as a ``Frame`` (liveml's own fields relabeled, first ``columns``)."""
    out = Frame(rows if not isinstance(rows, pd.DataFrame) else rows.copy())
    if columns is not None and len(out.columns):
        first = [c for c in columns if c in out.columns]
        out = out[first + [c for c in out.columns if c not in first]]
    out.attrs["liveml_labels"] = labels
    out.attrs["liveml_empty"] = empty
    return out


def data_frame(rows: Any) -> Frame:
    """Model inputs or outputs (user columns keep their names) as a ``Frame``."""
    return frame(rows, labels=False)


# --- liveml's own objects ---------------------------------------------------------------------

def replicas_table(replicas: Sequence[Mapping[str, Any]], empty: str = "no replicas yet") -> str:
    if not replicas:
        return f"<div class='lm-muted'>{escape(empty)}</div>"
    rows = [{"node": r["nodeId"], "state": badge(r["state"]), "health": badge(r["health"]),
             "release": r["releaseVersion"], "restarts": r.get("restarts") or None,
             "reason": r["reason"]} for r in replicas]
    return table(rows, labels=False, raw={"state", "health"})


def deployment_card(d: Mapping[str, Any]) -> str:
    """A deployment: name, state, release, profiles and resources, its replicas."""
    st, rc = d["status"], d["runtimeConfiguration"]
    release = (d.get("release") or {}).get("version")
    target = (d.get("targetRelease") or {}).get("version")
    served = escape(release or "none yet") + (
        f" <span class='lm-muted'>(rolling out {escape(target)})</span>"
        if target and target != release else "")
    replicas = (f"{rc['minReplicas']}" if rc["minReplicas"] == rc["maxReplicas"]
                else f"{rc['minReplicas']} to {rc['maxReplicas']} (autoscaled)")
    resources = f"{fmt.decimal(rc['cpu'])} vCPU, {escape(rc['memory'])}" + (
        f", {rc['gpu']} GPU" if rc.get("gpu") else "") + f", {rc['threadCount']} thread(s)"
    items = [("API name", f"<code>{escape(d['apiName'])}</code>"), ("RID", short_id(d["rid"])),
             ("environment", escape(d["environment"].title())), ("release", served),
             ("ready", f"{st['readyReplicas']}/{st['desiredReplicas']} replicas"),
             ("replicas", f"{escape(replicas)} <span class='lm-muted'>(profile "
                          f"{escape(d['replicaProfile'])})</span>"),
             ("resources", f"{resources} <span class='lm-muted'>(profile "
                           f"{escape(d['resourceProfile'])})</span>")]
    if st.get("reason"):
        items.insert(0, ("reason", escape(st["reason"])))
    return card(d["name"], st["state"], escape(d.get("description") or ""), items,
                replicas_table(st["replicas"], "no replicas: disabled (Enable starts them)"
                               if st["state"] == "DISABLED" else "no replicas yet"))


def submission_card(s: Mapping[str, Any]) -> str:
    def describe(io: Mapping[str, Any]) -> str:
        cols = ", ".join(f"{escape(c['name'])}: {escape(c['type'])}" for c in io.get("columns", []))
        kind = io.get("kind", "")
        what = f"table ({cols})" if kind == "tabular" and cols else (
            "table" if kind == "tabular" else escape(io.get("type", kind)))
        return f"<code>{escape(io['name'])}</code> {what}"

    api = s.get("api") or {}
    reqs = ", ".join(f"{k} {v}" for k, v in (s.get("requirements") or {}).items())
    items = [("RID", short_id(s["rid"])), ("adapter", escape(s["adapter"].rsplit(".", 1)[-1])),
             ("inputs", "<br>".join(describe(i) for i in api.get("inputs", []))),
             ("outputs", "<br>".join(describe(o) for o in api.get("outputs", []))),
             ("packages", escape(reqs or "none recorded")),
             ("artifact", f"{fmt.size(s.get('artifactBytes') or 0)}, self-test passed"),
             ("submitted", escape(fmt.short_time(s["createdAt"])))]
    return card(f"Submission {s['name']}", None, "", items)


def release_line(r: Mapping[str, Any], submission: str = "") -> str:
    tag = r.get("tag")
    of = f" of <code>{escape(submission)}</code>" if submission else ""
    return note(f"Release <b>{escape(r['version'])}</b>{of} {badge(tag) if tag else '(no tag)'} "
                f"<span class='lm-muted'>{short_id(r['rid'])}</span>", "ok")


def profiles_html(doc: Mapping[str, Any]) -> str:
    replicas = [{"name": p["name"], "replicas": p["minReplicas"] if p["minReplicas"] ==
                 p["maxReplicas"] else f"{p['minReplicas']}–{p['maxReplicas']}",
                 "description": p.get("description", "")} for p in doc["replicaProfiles"]]
    resources = [{"name": p["name"], "vCPU": p["cpu"], "memory": p["memory"],
                  "GPU": p.get("gpu") or "", "GPU type": p.get("gpuType") or "",
                  "description": p.get("description", "")} for p in doc["resourceProfiles"]]
    return ("<h4>Replica profiles</h4>" + table(replicas, labels=False) +
            "<h4>Resource profiles</h4>" + table(resources, labels=False))


def metrics_summary(rows: Sequence[Mapping[str, Any]], what: str = "") -> str:
    """The newest value of each metric per replica, with units, and how many samples."""
    if not rows:
        return note(f"no {escape(what) + ' ' if what else ''}samples in this window yet: metrics "
                    "are sampled every few seconds (request metrics once queries arrive)", "warn")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["nodeId"], row["name"])
        counts[key] = counts.get(key, 0) + 1
        if key not in latest or row["time"] >= latest[key]["time"]:
            latest[key] = dict(row)
    out = [{"kind": r["kind"], "node": "all replicas" if r["nodeId"] == "*" else r["nodeId"],
            "metric": r["name"], "latest": fmt.quantity(r["value"], r["unit"]),
            "samples": counts[(r["nodeId"], r["name"])], "at": r["time"]}
           for r in sorted(latest.values(), key=lambda r: (r["kind"], r["nodeId"], r["name"]))]
    return table(out, labels=False)

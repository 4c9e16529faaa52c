"""The log store and its query language, on a real SQLite file (no server)."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from liveml_ext.core.errors import InvalidArgument
from liveml_ext.observability.logquery import InvalidLogQuery, compile_query, parse
from liveml_ext.observability.logstore import InvalidLogColumn, LogStore
from liveml_ext.observability.shipper import LogShipper

RID = "ri.foundry-ml-live.main.live-deployment.00000000-0000-0000-0000-000000000001"
OTHER = "ri.foundry-ml-live.main.live-deployment.00000000-0000-0000-0000-000000000002"
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def rec(seconds: float, message: str, node: str = "n1", level: str = "INFO",
        logger: str = "liveml.replica", rid: str = RID, release: str = "1.0",
        fields: dict[str, Any] | None = None, traceback: str | None = None,
        **tags: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"time": (T0 + dt.timedelta(seconds=seconds)).isoformat(), "level": level,
                           "logger": logger, "message": message,
                           "tags": {"node_id": node, "deployment_rid": rid, "release": release, **tags}}
    if fields is not None:
        doc["fields"] = fields
    if traceback is not None:
        doc["traceback"] = traceback
    return doc


RECORDS = [
    rec(0, "Replica listening on 127.0.0.1:43757", fields={"port": 43757, "ok": True}),
    rec(1, "Self-test prediction passed", fields={"seconds": 0.4}),
    rec(2, "Replica ready", node="n2", fields={"seconds": 2.5}),
    rec(3, "predicting house prices for 3 rows", logger="model-logger", node="n2", zone="eu"),
    rec(4, "request failed", level="ERROR", logger="liveml.gateway", node="n2",
        traceback="Traceback (most recent call last):\n\tValueError: bad input"),
    rec(5, "slow request", level="warning", logger="liveml.gateway", node="n3",
        fields={"seconds": 1.7}),
    rec(6, "Replica ready", node="n3", release="2.0"),
    rec(7, "Self-test prediction passed", node="n1", rid=OTHER),
]


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    s = LogStore(tmp_path / "logs.db")
    assert s.append(RECORDS) == len(RECORDS)
    yield s
    s.close()


def messages(store: LogStore, query: str = "", **kwargs: Any) -> list[str]:
    return [r["message"] for r in store.search(RID, query, limit=1000, **kwargs)["data"]]


def test_node_id_filter_returns_only_that_replica(store: LogStore) -> None:
    for query in ("node_id:n2", "tags.node_id:n2"):
        rows = store.search(RID, query)["data"]
        assert [r["node_id"] for r in rows] == ["n2", "n2", "n2"]
        assert [r["message"] for r in rows] == ["request failed", "predicting house prices for 3 rows",
                                                "Replica ready"]
    assert store.search(RID, "node_id:n9")["data"] == []


def test_search_is_per_deployment(store: LogStore) -> None:
    assert len(messages(store)) == 7
    assert [r["message"] for r in store.search(OTHER)["data"]] == ["Self-test prediction passed"]
    assert store.search("ri.unknown")["data"] == []
    assert store.count() == 8 and store.count(RID) == 7 and store.count("ri.unknown") == 0


def test_free_text_finds_a_model_log_line(store: LogStore) -> None:
    assert messages(store, '"house prices"') == ["predicting house prices for 3 rows"]
    assert messages(store, "PREDICTING") == ["predicting house prices for 3 rows"]
    assert messages(store, "predict*") == ["predicting house prices for 3 rows",
                                           "Self-test prediction passed"]
    assert messages(store, '"self-test"') == ["Self-test prediction passed"]
    assert messages(store, "message:ready") == ["Replica ready", "Replica ready"]
    assert messages(store, '"prices house"') == []  # a phrase keeps its word order
    assert messages(store, "43757") == ["Replica listening on 127.0.0.1:43757"]


def test_field_values_quotes_and_prefix(store: LogStore) -> None:
    assert messages(store, 'logger:"model-logger"') == ["predicting house prices for 3 rows"]
    assert messages(store, "logger:model") == []  # exact, not a substring
    assert set(messages(store, "logger:liveml.*")) == {r["message"] for r in RECORDS[:7]} - {
        "predicting house prices for 3 rows"}
    assert messages(store, "logger:liveml.gate*") == ["slow request", "request failed"]
    assert messages(store, 'logger:"liveml.*"') == []  # a '*' inside quotes is literal
    assert messages(store, "fields.port:43757") == ["Replica listening on 127.0.0.1:43757"]
    assert messages(store, "fields.ok:true") == ["Replica listening on 127.0.0.1:43757"]
    assert messages(store, "fields.ok:false") == messages(store, "fields.port:4375") == []
    assert messages(store, "tags.zone:eu") == ["predicting house prices for 3 rows"]
    assert messages(store, "release:2.0") == messages(store, "tags.release:2.0") == ["Replica ready"]
    assert messages(store, "traceback:*") == ["request failed"]
    assert messages(store, "fields.seconds>1.5") == ["slow request", "Replica ready"]
    assert messages(store, "fields.seconds<=1.7") == ["slow request", "Self-test prediction passed"]
    assert messages(store, 'logger:"x\' OR 1=1 --"') == []  # values are bound, never spliced in


def test_boolean_operators_and_precedence(store: LogStore) -> None:
    def expect(query: str, keep: Any) -> None:
        wanted = [r["message"] for r in reversed(RECORDS[:7]) if keep(r)]
        assert messages(store, query) == wanted, query

    def node(r: dict[str, Any]) -> str:
        return r["tags"]["node_id"]

    expect("node_id:n2 AND ready", lambda r: node(r) == "n2" and "ready" in r["message"])
    expect("node_id:n2 ready", lambda r: node(r) == "n2" and "ready" in r["message"])
    expect("node_id:n1 OR node_id:n3", lambda r: node(r) in ("n1", "n3"))
    expect("NOT node_id:n2", lambda r: node(r) != "n2")
    expect("-node_id:n2", lambda r: node(r) != "n2")
    expect("-request", lambda r: "request" not in r["message"])
    # NOT > AND > OR: "a OR b c" is a OR (b AND c); "NOT a b" is (NOT a) AND b
    expect("node_id:n1 OR node_id:n2 ready",
           lambda r: node(r) == "n1" or (node(r) == "n2" and "ready" in r["message"]))
    expect("(node_id:n1 OR node_id:n2) ready", lambda r: node(r) in ("n1", "n2") and "ready" in r["message"])
    expect("NOT node_id:n2 ready", lambda r: node(r) != "n2" and "ready" in r["message"])
    expect("NOT (node_id:n2 OR node_id:n3)", lambda r: node(r) == "n1")
    expect("NOT NOT node_id:n3", lambda r: node(r) == "n3")
    # a record without the field counts as not matching it, so NOT matches it
    expect("NOT tags.zone:eu", lambda r: r["tags"].get("zone") != "eu")
    expect("NOT traceback:*", lambda r: "traceback" not in r)


def test_level_matches_case_insensitively(store: LogStore) -> None:
    assert messages(store, "level:error") == messages(store, "level:ERROR") == ["request failed"]
    assert messages(store, "level:WARNING") == ["slow request"]  # stored as "warning"
    assert messages(store, "level:Warn*") == ["slow request"]
    assert messages(store, "level>=warning") == ["slow request", "request failed"]
    assert len(messages(store, "level:info")) == 5


def test_time_window(store: LogStore) -> None:
    second = dt.timedelta(seconds=1)
    assert messages(store, start=T0 + 2 * second, end=T0 + 4 * second) == [
        "request failed", "predicting house prices for 3 rows", "Replica ready"]
    assert messages(store, start=T0 + 5 * second) == ["Replica ready", "slow request"]
    assert messages(store, end=T0) == ["Replica listening on 127.0.0.1:43757"]
    naive = (T0 + 6 * second).replace(tzinfo=None)  # naive times are UTC
    assert messages(store, start=naive) == ["Replica ready"]
    assert messages(store, "ready", start=T0 + 3 * second, end=T0 + 10 * second) == ["Replica ready"]
    assert messages(store, "ready", start=T0 + 7 * second) == []
    with pytest.raises(InvalidArgument):
        store.search(RID, start=T0 + second, end=T0)


def test_column_choice_and_order(store: LogStore) -> None:
    row = store.search(RID, "node_id:n1", limit=1)["data"][0]
    assert list(row) == ["time", "level", "node_id", "logger", "message"]
    assert row["time"] == "2026-11-26T10:00:01.000000+00:00"
    columns = ["message", "fields.seconds", "tags.release", "time", "traceback", "tags.zone",
               "deployment_rid", "fields"]
    rows = store.search(RID, "node_id:n2", columns=columns)["data"]
    assert [list(r) for r in rows] == [columns] * 3
    assert rows[0]["traceback"].startswith("Traceback") and rows[0]["fields.seconds"] is None
    assert rows[1]["tags.zone"] == "eu" and rows[1]["deployment_rid"] == RID
    assert rows[2] == {"message": "Replica ready", "fields.seconds": 2.5, "tags.release": "1.0",
                       "time": "2026-11-26T10:00:02.000000+00:00", "traceback": None,
                       "tags.zone": None, "deployment_rid": RID, "fields": {"seconds": 2.5}}


@pytest.mark.parametrize("column", ["foo", "tags", "level.x", "fields..x", "", "fields.*"])
def test_unknown_column_raises(store: LogStore, column: str) -> None:
    with pytest.raises(InvalidLogColumn) as err:
        store.search(RID, columns=["time", column])
    assert err.value.status == 400 and err.value.code == "INVALID_ARGUMENT"
    assert err.value.parameters["column"] == column
    with pytest.raises(InvalidLogColumn):
        store.export(RID, columns=[column])


def test_paging_covers_every_record_once_newest_first(tmp_path: Path) -> None:
    with LogStore(tmp_path / "logs.db") as s:
        # 250 records, many sharing a timestamp, so the token must break ties by id
        s.append(rec(i // 4, f"line {i}", node=f"n{i % 3}") for i in range(250))
        s.append([rec(1000, "elsewhere", rid=OTHER)])
        seen: list[dict[str, Any]] = []
        token = None
        for _ in range(100):
            page = s.search(RID, limit=7, page_token=token, columns=["time", "message"])
            seen += page["data"]
            token = page["nextPageToken"]
            if token is None:
                break
        assert len(page["data"]) == 250 % 7
        assert sorted(r["message"] for r in seen) == sorted(f"line {i}" for i in range(250))
        times = [r["time"] for r in seen]
        assert times == sorted(times, reverse=True)
        assert seen == s.search(RID, limit=250, columns=["time", "message"])["data"]
        one = s.search(RID, "node_id:n1", limit=50)
        rest = s.search(RID, "node_id:n1", limit=50, page_token=one["nextPageToken"])
        assert len(one["data"]) == 50 and len(rest["data"]) == 33 and rest["nextPageToken"] is None
        with pytest.raises(InvalidArgument):
            s.search(RID, page_token="not a token")
        with pytest.raises(InvalidArgument):
            s.search(RID, limit=0)


def test_export_yields_a_header_and_every_row(store: LogStore) -> None:
    chunks = store.export(RID, columns=["node_id", "message", "traceback"])
    text = "".join(chunks)
    lines = text.splitlines()
    assert lines[0] == "node_id\tmessage\ttraceback"
    assert len(lines) == 1 + 7
    assert lines[1] == "n3\tReplica ready\t"
    assert lines[3] == ("n2\trequest failed\tTraceback (most recent call last):\\n\\tValueError: "
                        "bad input")
    assert "".join(store.export(RID, "level:error", columns=["message"])) == "message\nrequest failed\n"


def test_export_streams_in_chunks(tmp_path: Path) -> None:
    with LogStore(tmp_path / "logs.db") as s:
        s.append(rec(i / 10, f"line {i}") for i in range(2500))
        chunks = list(s.export(RID, columns=["message"]))
        assert chunks[0] == "message\n" and len(chunks) == 4  # the header, then 1000 rows a chunk
        lines = "".join(chunks).splitlines()[1:]
        assert lines == [f"line {i}" for i in reversed(range(2500))]
        with pytest.raises(InvalidLogQuery):
            s.export(RID, "(")  # before the first chunk is asked for


def test_an_export_leaves_out_records_appended_after_it_started(store: LogStore) -> None:
    lines = store.export(RID, "NOT ready", start=T0, end=T0 + dt.timedelta(seconds=10),
                         columns=["message"])
    store.append([rec(3.5, "late Replica ready")])  # in the window, but after the export began
    text = "".join(lines)
    assert "late Replica ready" not in text
    assert text.splitlines()[1:] == ["slow request", "request failed",
                                     "predicting house prices for 3 rows",
                                     "Self-test prediction passed",
                                     "Replica listening on 127.0.0.1:43757"]


def test_sweep_deletes_only_old_records_from_table_and_fts(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    with LogStore(path, retention=dt.timedelta(days=7)) as s:
        now = T0 + dt.timedelta(days=10)
        s.append([rec(-86400 * 0, "ancient zebra"), rec(86400 * 2.5, "old zebra"),
                  rec(86400 * 3.5, "recent zebra"), rec(86400 * 10, "fresh zebra")])
        assert s.sweep(now=now) == 2
        assert messages(s, "zebra") == ["fresh zebra", "recent zebra"]
        assert messages(s, "ancient") == [] and s.count() == 2
        assert s.sweep(now=now) == 0
    with sqlite3.connect(path) as db:
        hits = db.execute("SELECT rowid FROM logs_fts WHERE logs_fts MATCH 'zebra'").fetchall()
        assert len(hits) == 2
        assert db.execute("SELECT count(*) FROM logs_fts WHERE logs_fts MATCH 'ancient OR old'"
                          ).fetchone()[0] == 0
        db.execute("INSERT INTO logs_fts (logs_fts) VALUES ('integrity-check')")  # raises if out of sync


def test_store_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    first = LogStore(path)
    first.append(RECORDS)
    first.close()
    with pytest.raises(RuntimeError):
        first.search(RID)
    with LogStore(path) as again:
        assert again.count() == 8
        assert messages(again, '"house prices"') == ["predicting house prices for 3 rows"]
        again.append([rec(100, "after the restart", rid=OTHER), rec(101, "new deployment", rid="ri.x")])
        assert [r["message"] for r in again.search(OTHER)["data"]] == ["after the restart",
                                                                        "Self-test prediction passed"]
        assert [r["message"] for r in again.search("ri.x", "new")["data"]] == ["new deployment"]
        assert again.path.exists() and again.fts


def test_without_fts5_free_text_is_a_substring_match(store: LogStore) -> None:
    store.fts = False
    assert messages(store, "PREDICT") == ["predicting house prices for 3 rows",
                                          "Self-test prediction passed"]
    assert messages(store, '"100%"') == []  # LIKE wildcards in the value are escaped
    assert messages(store, "-ready node_id:n3") == ["slow request"]


def test_reader_threads_while_a_writer_appends(tmp_path: Path) -> None:
    with LogStore(tmp_path / "logs.db") as s:
        errors: list[BaseException] = []

        def write() -> None:
            try:
                for batch in range(20):
                    s.append(rec(batch * 50 + i, f"batch {batch} line {i}") for i in range(50))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        while writer.is_alive():
            page = s.search(RID, "batch", limit=10)["data"]
            assert all(r["message"].startswith("batch") for r in page)
        writer.join()
        assert not errors and s.count(RID) == 1000
        assert len(messages(s, "line")) == 1000


@pytest.mark.parametrize(("query", "position", "fragment"), [
    ("(level:INFO", 0, "unclosed '('"),
    ("level:info AND (ready OR (slow)", 15, "unclosed '('"),
    ("level:info) ready", 10, "unexpected ')'"),
    ('message:"unclosed', 8, "unclosed '\"'"),
    ("level:INFO AND", 11, "nothing follows 'AND'"),
    ("ready OR", 6, "nothing follows 'OR'"),
    ("ready NOT", 6, "nothing follows 'NOT'"),
    ("AND OR", 0, "unexpected 'AND'"),
    ("ready AND OR slow", 10, "unexpected 'OR'"),
    ("ready -", 6, "nothing follows '-'"),
    ("level:", 6, "missing value"),
    ("level:(", 6, "missing value"),
    (":ready", 0, "missing field name"),
    ("ready ; slow", 6, "unexpected character ';'"),
    ("ready [x]", 6, "unexpected character '['"),
    ("foo:bar", 0, "unknown field 'foo'"),
    ("a ()", 2, "empty parentheses"),
    ("re*dy", 2, "'*' is only allowed at the end"),
    ("fields.seconds>1*", 15, "prefix"),
    ("level>=loud", 0, "unknown level"),
])
def test_malformed_queries_point_at_the_problem(store: LogStore, query: str, position: int,
                                                fragment: str) -> None:
    with pytest.raises(InvalidLogQuery) as err:
        store.search(RID, query)
    assert err.value.status == 400 and err.value.code == "INVALID_ARGUMENT"
    assert err.value.name == "InvalidLogQuery"
    assert err.value.parameters == {"query": query, "position": position}
    assert fragment in err.value.message and f"position {position}" in err.value.message


def test_compiled_sql_binds_every_value() -> None:
    sql, params = compile_query('logger:"a\'b" OR fields.x:"1; DROP TABLE logs" OR "zzq"')
    assert "a'b" not in sql and "DROP" not in sql and "zzq" not in sql
    assert params.count("a'b") == 1 and sql.count("?") == len(params)
    assert parse("") is None and parse("   ") is None


@pytest.mark.parametrize("fts", [True, False])
def test_every_kind_of_term_runs(store: LogStore, fts: bool) -> None:
    store.fts = fts
    queries = ["fields.seconds>=0.4 tags.zone:* -traceback:*", 'fields.x:"a b"* OR release<2',
               "time>=2026-11-26T10:00:03Z level<=info", 'deployment_rid:ri.* message:"prices"*',
               "NOT (logger:liveml.* OR fields.ok:true) ready", "x OR level>debug",
               "(a OR b) (c OR d) -e", "node_id>n2 OR logger<=m", "fields.port<43758 fields.port>43756"]
    for query in queries:
        sql, params = compile_query(query, fts=fts)
        assert sql.count("?") == len(params), query
        store.search(RID, query)
        store.search(RID, query, start=T0)
    assert messages(store, "fields.port<43758 fields.port>43756") == ["Replica listening on 127.0.0.1:43757"]
    assert messages(store, "time>=2026-11-26T10:00:05Z") == ["Replica ready", "slow request"]


def test_shipper_keeps_the_lines_written_while_a_replica_finishes(tmp_path: Path) -> None:
    """A replica writes its last line and exits while a flush is reading its file: the flush
    that read before ``finish()`` must not delete the file (its last line would be lost)."""
    store = LogStore(tmp_path / "logs.db")
    shipper = LogShipper(store, tmp_path / "offsets.json")
    log_file = tmp_path / "n1.log"
    log_file.write_text(json.dumps(rec(0, "Draining")) + "\n")
    shipper.watch(str(log_file), {"node_id": "n1", "deployment_rid": RID})
    read = shipper._read

    def read_then_the_replica_finishes(*args):
        lines = read(*args)
        with open(log_file, "a") as fh:
            fh.write(json.dumps(rec(1, "Replica stopped")) + "\n")
        shipper.finish(str(log_file))  # the backend saw the process exit
        return lines

    shipper._read = read_then_the_replica_finishes  # type: ignore[method-assign]
    shipper.flush()
    shipper._read = read  # type: ignore[method-assign]
    assert log_file.exists()
    shipper.flush()
    assert not log_file.exists() and not shipper.sources
    assert [r["message"] for r in store.search(RID)["data"]] == ["Replica stopped", "Draining"]
    store.close()

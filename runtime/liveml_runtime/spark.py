"""Local Spark inside a replica: one SparkSession per process, started before the replica is ready.

The JVM is a child of the replica's Python process (py4j's gateway): it shares the replica's
process group, so the local backend's memory check (RSS of the process tree) and its kill count
it, and it exits when the replica does (the gateway reads its stdin until the parent goes away).
Spark's log4j2 lines at WARN and above are written to stderr as JSON log records shaped like the
replica's own (the replica sends stdout and stderr to one log).

Importing this module does not import pyspark; ``session()`` does.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

from . import logs
from .errors import error_class

log = logging.getLogger("liveml.spark")

#: No JDK here: a Spark model is refused at submission, and a replica fails to start, with this.
JavaNotFound = error_class("JavaNotFound", 400, "INVALID_ARGUMENT")

#: A small heap's collector with no GC threads to spare (a replica has a core or two)
JAVA_OPTIONS = "-XX:+UseSerialGC"

_lock = threading.Lock()
_session: Any = None


def java_executable() -> str | None:
    """The ``java`` Spark will run: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def require_java() -> str:
    java = java_executable()
    if java is None:
        where = f"JAVA_HOME={os.environ['JAVA_HOME']} has no bin/java" if os.environ.get(
            "JAVA_HOME") else "no `java` on PATH and JAVA_HOME is not set"
        raise JavaNotFound(
            f"JavaNotFound: Spark models need a Java runtime, and {where}. Install a JDK 17 or "
            "later (e.g. apt-get install openjdk-17-jre-headless) and put it on PATH or set "
            "JAVA_HOME, in the environment of the liveml server and its replicas",
            javaHome=os.environ.get("JAVA_HOME", ""))
    return java


def _java_version(java: str) -> str:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return (out.stderr or out.stdout).strip().splitlines()[0] if (out.stderr or out.stdout) else ""


_LEVELS = "%level{WARN=WARNING, FATAL=CRITICAL}"


def log4j_config(tags: dict[str, str]) -> str:
    """A log4j2 properties file: WARN and above as JSON lines shaped like the replica's own."""
    tag_json = json.dumps(tags).replace("$", "$$")
    # the `%enc{...}{JSON}` converter escapes the message and the stack trace for JSON
    pattern = ('{"time":"%d{yyyy-MM-dd\'T\'HH:mm:ss.SSSSSS}{UTC}+00:00","level":"' + _LEVELS
               + '","logger":"%c","message":"%enc{%m}{JSON}","tags":' + tag_json
               + ',"fields":{"source":"spark","thread":"%enc{%t}{JSON}"}'
               + '%notEmpty{,"traceback":"%enc{%throwable}{JSON}"}}%n')
    return "\n".join([
        "status = error",
        "appender.json.type = Console",
        "appender.json.name = json",
        "appender.json.target = SYSTEM_ERR",  # the replica sends both to its log; inspect reads stdout
        "appender.json.layout.type = PatternLayout",
        "appender.json.layout.alwaysWriteExceptions = false",
        f"appender.json.layout.pattern = {pattern}",
        "rootLogger.level = warn",
        "rootLogger.appenderRef.json.ref = json",
        # a warning every start with no meaning here
        "logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader",
        "logger.nativecode.level = error",
        "",
    ])


def _memory_option() -> str | None:
    """The driver heap for a replica's memory limit (``LIVEML_MEMORY_LIMIT``, bytes): about
    half of it, so that the heap, the JVM's own memory and Python fit together."""
    limit = os.environ.get("LIVEML_SPARK_DRIVER_MEMORY")
    if limit:
        return limit
    try:
        total = int(os.environ.get("LIVEML_MEMORY_LIMIT", "0"))
    except ValueError:
        return None
    if total <= 0:
        return None
    return f"{max(256, total // 2**20 // 2)}m"


def session(threads: int | None = None) -> Any:
    """The replica's SparkSession: local, on loopback, UTC, Arrow on, no UI (started once)."""
    global _session
    with _lock:
        if _session is not None:
            return _session
        java = require_java()
        start = time.perf_counter()
        from pyspark.sql import SparkSession

        threads = threads or int(os.environ.get("LIVEML_THREAD_COUNT", "1") or 1)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # all of Spark on loopback
        tags = logs.current_tags()
        fd, conf_path = tempfile.mkstemp(prefix="liveml-log4j2-", suffix=".properties")
        with os.fdopen(fd, "w") as fh:
            fh.write(log4j_config(tags))
        # the JVM's and Spark's temporary files go to the replica's own TMPDIR (its sandbox
        # folder: it may write nowhere else), not to java.io.tmpdir's default /tmp
        tmp = tempfile.gettempdir()
        java_opts = (f"-Dlog4j2.configurationFile=file:{conf_path} -Duser.timezone=UTC "
                     f"-Djava.io.tmpdir={tmp} "
                     + os.environ.get("LIVEML_SPARK_JAVA_OPTIONS", JAVA_OPTIONS))
        builder = (SparkSession.builder.master(f"local[{max(1, threads)}]")
                   .appName(f"liveml-{tags.get('node_id', 'replica')}")
                   .config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.driver.host", "127.0.0.1")
                   .config("spark.sql.session.timeZone", "UTC")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.ui.enabled", "false")
                   .config("spark.local.dir", tmp)
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.sql.shuffle.partitions", str(max(1, threads)))
                   .config("spark.default.parallelism", str(max(1, threads)))
                   .config("spark.driver.extraJavaOptions", java_opts))
        memory = _memory_option()
        if memory:
            builder = builder.config("spark.driver.memory", memory)
        try:
            spark = builder.getOrCreate()
        except Exception as exc:
            raise JavaNotFound(
                f"JavaNotFound: local Spark did not start with {java} "
                f"({_java_version(java)}): {type(exc).__name__}: {exc}. Spark 4 needs a JDK 17 "
                "or later", java=java) from exc
        spark.sparkContext.setLogLevel("WARN")
        seconds = time.perf_counter() - start
        jvm = spark.sparkContext._jvm
        assert jvm is not None  # a started session has its gateway to the JVM
        java_version = str(jvm.System.getProperty("java.version"))
        logs.step(log, f"Starting local Spark: Spark {spark.version} on Java {java_version}, "
                  f"local[{threads}], in {seconds:.3f}s", spark=spark.version, java=java_version,
                  javaHome=str(jvm.System.getProperty("java.home")), master=f"local[{threads}]",
                  seconds=round(seconds, 3))
        _session = spark
        return spark


def started() -> bool:
    return _session is not None


def stop() -> None:
    """Stop the session (the JVM exits with the replica anyway)."""
    global _session
    with _lock:
        if _session is not None:
            try:
                _session.stop()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            _session = None

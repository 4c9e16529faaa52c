"""The control plane's settings: each option declared once, as a ``Settings`` field.

``liveml server`` derives its flags from ``Settings.options()`` (``cli.add_settings_flags``), the
Jupyter extension its traits (``extension.LiveMLExtension``), and ``LIVEML_<NAME>`` environment
variables set any of them. Standard library only: the CLI builds its parser from it at once.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def default_home() -> Path:
    return Path(os.environ.get("LIVEML_HOME") or Path.home() / ".liveml")


@dataclass(frozen=True)
class Option:
    """One ``Settings`` field as ``liveml server`` (``flags``), the Jupyter extension
    (``trait``) and the environment (``env``) name it; all three take the same values."""

    name: str
    kind: type  # str, int, float or bool (a Path is given as str)
    nullable: bool
    default: Any
    help: str
    flags: tuple[str, ...]
    trait: str
    env: str
    choices: tuple[str, ...] = ()
    kubernetes: bool = False  # applies to the Kubernetes backend only

    def describe(self) -> str:
        """The help text, with the default and the environment variable."""
        shown = "" if "(default" in self.help or self.default in ("", None) else \
            f" (default {self.default})"
        return f"{self.help}{shown}; env {self.env}"

    def parse(self, text: str) -> Any:
        """A value given as text (an environment variable); ``ValueError`` says what fits."""
        if self.kind is bool:
            if text.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if text.strip().lower() in ("", "0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.env}={text!r}: use true or false")
        try:
            return self.kind(text)
        except ValueError:
            what = {int: "a whole number", float: "a number"}.get(self.kind, "a value")
            raise ValueError(f"{self.env}={text!r}: give {what}, like {self.default!r}") from None

    def initial(self, environ: Mapping[str, str] | None = None) -> Any:
        """Its value before a flag or a trait sets it: the environment's, else the default."""
        environ = os.environ if environ is None else environ
        return self.parse(environ[self.env]) if self.env in environ else self.default


def option(default: Any, help: str, *, flags: tuple[str, ...] = (), trait: str = "",
           choices: tuple[str, ...] = (), kubernetes: bool = False) -> Any:
    """A ``Settings`` field declared once: its default, help text and, when they differ from
    the field's name, its extra CLI flags (aliases) and trait name."""
    return field(default=default, metadata={"help": help, "flags": flags, "trait": trait,
                                            "choices": choices, "kubernetes": kubernetes})


@dataclass
class Settings:
    """Where things live and how the control plane behaves; all have embedded defaults.

    Each field is an option of ``liveml server`` (``--max-json-bytes``), a trait of the Jupyter
    extension (``c.LiveMLExtension.max_json_bytes``) and an environment variable
    (``LIVEML_MAX_JSON_BYTES``): ``Settings.options()`` lists them; a flag or a trait wins over
    the environment, which wins over the default."""

    home: Path = option("", "liveml home folder (default $LIVEML_HOME or ~/.liveml)")
    database_url: str = option("", "SQLAlchemy URL, e.g. postgresql://user@host/liveml "
                               "(default SQLite in the home)")
    artifact_url: str = option("", "fsspec URL of the artifact store, e.g. s3://bucket/liveml "
                               "(default <home>/artifacts)")
    max_body_bytes: int = option(50 * 1024 * 1024, "largest inference request body "
                                 "(413 past it)")
    max_json_bytes: int = option(4 * 1024 * 1024, "largest JSON body of a management call "
                                 "(413 past it)")
    max_artifact_bytes: int = option(2 * 1024 ** 3, "largest model upload, streamed to disk "
                                     "(413 past it)")
    inference_timeout: float = option(60.0, "seconds a replica may take to answer a query")
    gateway_batch: int = option(16, "queries the gateway sends a busy deployment's replica "
                                "in one call (1: one query per call)")
    tick: float = option(0.2, "seconds between passes of the reconcile loop")
    startup_timeout: float = option(300.0, "seconds a replica may take to become ready")
    drain_timeout: float = option(30.0, "seconds a replica being replaced may take to finish "
                                  "its queries")
    progress_deadline: float = option(600.0, "seconds a rollout may take before it is stopped")
    profiles_file: str = option("", "JSON file of replica and resource profiles "
                                "(default <home>/profiles.json when present)",
                                flags=("--profiles",))
    max_thread_count: int = option(16, "largest threadCount a deployment may ask for")
    log_retention_days: float = option(7.0, "days service logs are kept")
    metrics_retention_days: float = option(7.0, "days metric samples are kept")
    capture_retention_days: float = option(7.0, "days the inference history (queries captured "
                                           "with a deployment's capture setting) is kept")
    metrics_interval: float = option(5.0, "seconds between metric samples")
    log_flush_interval: float = option(0.5, "seconds between moves of replica log files into "
                                       "the log store")
    pin_cpus: bool = option(False, "pin each replica to ceil(cpu) cores (for machines with "
                            "cores to spare)")
    replica_user: str | None = option(None, "user that runs model code (inspection and local "
                                      "replicas) when the server runs as root (default nobody; "
                                      "\"\" = the server's own user)")
    backend: str = option("local", "where replicas run: local processes or a Kubernetes cluster",
                          choices=("local", "kubernetes"))
    kube_namespace: str = option("", "namespace of the replicas' objects (default: the control "
                                 "plane's own namespace in a cluster, else the kubeconfig "
                                 "context's, else default)", kubernetes=True)
    kubeconfig: str = option("", "kubeconfig file (default: in-cluster service account, else "
                             "$KUBECONFIG or ~/.kube/config)", kubernetes=True)
    kube_context: str = option("", "kubeconfig context (default: current)", kubernetes=True)
    image: str = option("", "replica image built from runtime/Dockerfile (default "
                        "liveml/runtime:<liveml version>)", trait="runtime_image", kubernetes=True)
    spark_image: str = option("", "replica image for Spark releases, built with WITH_SPARK=true "
                              "(default: the image tag with -spark appended)",
                              trait="spark_runtime_image", kubernetes=True)
    replica_token_secret: str = option("liveml-replica-token", "Secret (key `token`) shared by "
                                       "the gateway and the replicas; created when missing",
                                       kubernetes=True)
    control_plane_url: str = option("", "URL pods reach this control plane at, to download "
                                    "artifacts when the artifact store is not a URL pods can "
                                    "read (e.g. http://liveml.liveml.svc:8765)", kubernetes=True)
    gateway_route: str = option("pods", "send queries to ready pod IPs (retried across pods) or "
                                "to each deployment's Service", choices=("pods", "service"),
                                kubernetes=True)
    kube_poll_interval: float = option(2.0, "seconds between reads of the cluster's state",
                                       kubernetes=True)
    lease_ttl: float = option(10.0, "seconds the controller lease lasts on a shared database "
                              "(PostgreSQL) before a standby takes over")

    def __post_init__(self) -> None:
        self.home = Path(self.home or default_home()).expanduser().resolve()
        self.database_url = self.database_url or f"sqlite:///{self.home / 'liveml.db'}"
        self.artifact_url = self.artifact_url or str(self.home / "artifacts")
        for o in self.options():
            if o.choices and getattr(self, o.name) not in o.choices:
                raise ValueError(f"unknown {o.name} {getattr(self, o.name)!r}: use "
                                 + " or ".join(o.choices))

    @classmethod
    def options(cls) -> list[Option]:
        """Every option, in declaration order."""
        return list(_options())

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **given: Any) -> Settings:
        """``given`` values, else the ``LIVEML_*`` environment's, else the defaults."""
        return cls(**{o.name: given[o.name] if o.name in given else o.initial(environ)
                      for o in cls.options()})


@functools.cache
def _options() -> tuple[Option, ...]:
    cls = Settings
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kinds = [k for k in typing.get_args(hints[f.name]) or (hints[f.name],) if k is not
                 type(None)]
        kind = str if kinds[0] is Path else kinds[0]
        flag = "--" + f.name.replace("_", "-")
        out.append(Option(f.name, kind, type(None) in typing.get_args(hints[f.name]), f.default,
                          f.metadata["help"], (flag, *f.metadata["flags"]),
                          f.metadata["trait"] or f.name, f"LIVEML_{f.name.upper()}",
                          f.metadata["choices"], f.metadata["kubernetes"]))
    return tuple(out)

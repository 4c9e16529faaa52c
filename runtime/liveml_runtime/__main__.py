"""``python -m liveml_runtime serve|inspect``: run a replica, or describe a model artifact."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import orjson


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liveml_runtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model artifact over HTTP")
    serve.add_argument("--artifact", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--port-file")
    serve.add_argument("--model-uuid", default="")
    serve.add_argument("--node-id", default=os.environ.get("HOSTNAME", "replica"))
    serve.add_argument("--deployment-rid", default="")
    serve.add_argument("--release", default="")
    serve.add_argument("--thread-count", type=int, default=1)
    serve.add_argument("--requirements", help="JSON file: {package: version} the model was saved with")
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests that may wait beyond --thread-count; more get 429")
    serve.add_argument("--input-example", default=os.environ.get("LIVEML_INPUT_EXAMPLE", ""),
                       help="the submission's input example: a JSON file (or inline JSON) of "
                       '{"columns": [...], "rows": [...]}')
    serve.add_argument("--max-columns", type=int,
                       default=int(os.environ.get("LIVEML_MAX_COLUMNS") or 0) or None,
                       help="distinct keys a request's rows may carry (default 1000, or twice "
                       "the declared columns when more); past it a 400 tooManyColumns")
    inspect = sub.add_parser("inspect", help="print a model artifact's API and requirements")
    inspect.add_argument("artifact")
    inspect.add_argument("--input-example", default="",
                         help="a JSON file of {\"columns\": [...], \"rows\": [...]}")
    args = parser.parse_args(argv)
    from .process import undumpable

    undumpable()

    if args.command == "inspect":
        from .adapter import inspect_artifact
        from .errors import LiveMLError
        from .schema import InputExample

        try:
            doc = inspect_artifact(args.artifact, InputExample.load(args.input_example))
        except LiveMLError as err:
            sys.stdout.write(orjson.dumps({"error": err.envelope()}).decode() + "\n")
            return 2
        except Exception as exc:  # noqa: BLE001 - reported as a structured error
            msg = f"{type(exc).__name__}: {exc}"
            sys.stdout.write(orjson.dumps({"error": {"message": msg}}).decode() + "\n")
            return 2
        sys.stdout.write(orjson.dumps(doc, default=str).decode() + "\n")
        return 0

    from . import logs
    from .api import MAX_COLUMNS
    from .server import ReplicaConfig
    from .server import serve as run

    logs.configure({"node_id": args.node_id, "deployment_rid": args.deployment_rid,
                    "release": args.release})
    config = ReplicaConfig(artifact=args.artifact, model_uuid=args.model_uuid,
                           node_id=args.node_id, deployment_rid=args.deployment_rid,
                           release=args.release, thread_count=args.thread_count,
                           max_queue=args.max_queue, requirements=args.requirements or "",
                           input_example=args.input_example,
                           max_columns=args.max_columns or MAX_COLUMNS,
                           # what the gateway presents: a Kubernetes deployment's own token,
                           # else this replica's credential (which also fetches its artifact)
                           token=os.environ.get("LIVEML_GATEWAY_TOKEN")
                           or os.environ.get("LIVEML_REPLICA_TOKEN", ""))
    return run_loop(run(config, args.host, args.port, args.port_file))


T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (faster sockets), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    sys.exit(main())

"""One progress bar for waiting on a deployment, in a terminal or a notebook (tqdm.auto).

The bar counts the target release's ready replicas; its postfix shows the newest startup step a
replica logged ("Loading model artifact", "Self-test prediction passed", ...).
"""
from __future__ import annotations

import time
from typing import Any, TextIO

from .client import Client, LiveMLClientError


def wait_with_progress(client: Client, ref: str, file: TextIO | None = None,
                       timeout: float = 300.0) -> dict[str, Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=1, desc="starting", unit="replica", file=file, leave=True)
    last_step = [0.0]

    def progress(doc: dict[str, Any]) -> None:
        st = doc["status"]
        version = (doc.get("targetRelease") or {}).get("version")
        bar.total = max(1, st["desiredReplicas"])
        bar.n = min(bar.total, sum(1 for r in st["replicas"]
                                   if r["state"] == "READY" and r["releaseVersion"] == version))
        bar.set_description(st["state"].lower())
        if time.monotonic() - last_step[0] > 0.5:  # the newest startup step, twice a second
            last_step[0] = time.monotonic()
            try:
                rows = client.logs(doc["rid"], "logger:liveml.replica", since="15m", limit=1,
                                   columns=["node_id", "message"])["data"]
            except LiveMLClientError:
                rows = []
            if rows:
                bar.set_postfix_str(f"{rows[0]['node_id']}: {rows[0]['message']}"[:70])
        bar.refresh()

    try:
        return client.wait(ref, timeout=timeout, progress=progress)
    finally:
        bar.close()

"""Adaptive batching: concurrent requests to a row-aligned model run as one ``predict`` call.

A model whose call costs about the same for 1 row as for 100 gains most of its throughput here:
while a worker is busy, requests queue up, and the next call takes all of them at once.

With one worker and a fast model (calls under ``inline_budget`` on average), the call runs on the
event loop itself: handing it to a thread costs more than a fast prediction's own overhead. Slow
models always run on worker threads, so health checks keep being answered.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .adapter import ModelRunner
from .errors import LiveMLError, TooManyRequests
from .frames import Rows, checked_rows


@dataclass
class _Item:
    inputs: dict[str, Any]
    key: Any
    rows: int
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class InferenceQueue:
    """Runs inference on ``workers`` threads, batching row-aligned requests with equal parameters."""

    def __init__(self, runner: ModelRunner, workers: int = 1, max_batch_rows: int = 4096,
                 max_queue: int = 1024, inline_budget: float = 0.02) -> None:
        self.runner = runner
        self.workers = max(1, workers)
        self.max_batch_rows = max_batch_rows
        self.max_queue = max_queue
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="inference")
        self.pending: deque[_Item] = deque()
        self.busy = 0
        self.table = runner.api.tabular_inputs[0].name if runner.batchable else None
        self.inline_budget = inline_budget
        self.mean_seconds: float | None = None  # moving average of one call

    def _inline(self) -> bool:
        return self.workers == 1 and self.mean_seconds is not None and \
            self.mean_seconds < self.inline_budget

    async def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if len(self.pending) >= self.max_queue and self.busy >= self.workers:
            raise TooManyRequests(
                f"the replica is at capacity ({self.workers} running, {len(self.pending)} "
                "waiting); retry shortly or raise threadCount or maxReplicas",
                queueLength=len(self.pending))
        if self.table is not None:
            key = tuple(sorted((k, repr(v)) for k, v in inputs.items() if k != self.table))
            item = _Item(inputs, key, len(inputs[self.table]))
        else:
            item = _Item(inputs, None, 0)
        self.pending.append(item)
        if self.busy < self.workers:
            self.busy += 1
            asyncio.get_running_loop().create_task(self._work())
        result: dict[str, Any] = await item.future
        return result

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch = self._take()
                start = time.perf_counter()
                try:
                    if self._inline():
                        results = self._run(batch)
                    else:
                        results = await loop.run_in_executor(self.executor, self._run, batch)
                except Exception as exc:  # noqa: BLE001 - delivered to every caller
                    results = [exc] * len(batch)
                took = time.perf_counter() - start
                self.mean_seconds = took if self.mean_seconds is None else \
                    0.8 * self.mean_seconds + 0.2 * took
                for item, result in zip(batch, results):
                    if item.future.done():
                        continue
                    if isinstance(result, BaseException):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)
        finally:
            self.busy -= 1

    def _take(self) -> list[_Item]:
        first = self.pending.popleft()
        batch, rows = [first], first.rows
        if self.table is None:
            return batch
        while self.pending and self.pending[0].key == first.key and \
                rows + self.pending[0].rows <= self.max_batch_rows:
            item = self.pending.popleft()
            batch.append(item)
            rows += item.rows
        return batch

    def _run(self, batch: list[_Item]) -> list[Any]:
        """On a worker thread: one model call for the batch; alone again if the batch fails."""
        runner = self.runner
        if len(batch) == 1:
            return [self._one(batch[0])]
        table = self.table
        assert table is not None  # a batch forms only for a model of one table (``add``)
        merged = dict(batch[0].inputs)
        merged[table] = [row for item in batch for row in item.inputs[table]]
        try:
            out = runner.infer(runner.to_frames(merged))
        except Exception:  # noqa: BLE001 - find which request fails by running each alone
            return [self._one(item) for item in batch]
        name, frame = next(iter(out.items()))
        if not hasattr(frame, "iloc") or len(frame) != sum(item.rows for item in batch):
            return [self._one(item) for item in batch]
        results: list[Any] = []
        start = 0
        try:  # checked and encoded once for the batch, then split: each request gets its rows
            rows: list[Any] = checked_rows(frame)
        except LiveMLError:  # the rows at fault are named per request, on its own slice
            for item in batch:
                results.append({name: frame.iloc[start:start + item.rows]})
                start += item.rows
            return results
        for item in batch:
            results.append({name: Rows(rows[start:start + item.rows])})
            start += item.rows
        return results

    def _one(self, item: _Item) -> Any:
        try:
            return self.runner.infer(self.runner.to_frames(item.inputs))
        except Exception as exc:  # noqa: BLE001 - delivered to the caller
            return exc

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

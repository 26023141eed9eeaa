"""Evaluation beside training: a helper thread evaluates frozen copies of the weights.

The paper evaluates every 100 iterations on 5K training, 5K validation and 10K test examples;
for one LeNet on a CPU core that costs about a third of the training time (the issue's
measurement at the paper's interval: as much as training). When the population engine has a
spare core (one network on a 2-core machine), training goes on while this worker evaluates
a snapshot taken at the evaluation point. It runs the same single-threaded code on equal
tensors, so the numbers are bit for bit those of evaluating inline
(``tests/training/test_engine.py``).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import torch

Row = dict[str, float]
_DONE = object()


class EvalWorker:
    """Runs ``evaluate(snapshot)`` for each submitted snapshot on one thread, in order.

    ``pending`` bounds how many snapshots wait (each is a copy of the weights), so a worker
    slower than training holds training back instead of filling memory.
    """

    def __init__(self, evaluate: Callable[[Any], list[Row]], intra_threads: int = 1,
                 pending: int = 2) -> None:
        if pending < 1:
            raise ValueError(f"pending must be >= 1, got {pending}")
        self._evaluate = evaluate
        self._intra = intra_threads
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=pending)
        self._rows: dict[int, list[Row]] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        torch.set_num_threads(self._intra)
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is not None:
                continue  # keep draining so that submit() never blocks forever
            iteration, snapshot = item
            try:
                self._rows[iteration] = self._evaluate(snapshot)
            except BaseException as exc:  # noqa: BLE001 - re-raised by results()
                self._error = exc

    def submit(self, iteration: int, snapshot: Any) -> None:
        """Queue one evaluation point (blocks while ``pending`` snapshots wait)."""
        if self._error is not None:
            raise self._error
        self._queue.put((iteration, snapshot))

    def results(self) -> dict[int, list[Row]]:
        """Wait for every submitted point; iteration -> one row per member."""
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._rows

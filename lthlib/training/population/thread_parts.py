"""A population split into parts that step together, one Python thread per part.

On a multi-core CPU the engine keeps every core busy with one single-threaded stack per core
(torch releases the GIL inside its ops) rather than with multi-threaded small GEMMs, whose
OpenMP barriers made steps up to 100x slower here when another process held a core.
Part 0 belongs to the calling thread: the engine's training loop steps it itself, exactly as
it steps a population of one part, so the optimizer update stays one call below the loop;
:meth:`ThreadedParts.queue_steps` hands the other parts' steps to their own threads.
Evaluation, snapshots and final states take every part at once (``evaluate``, ``snapshot``,
``final_states``, as one stack has them). Each part runs the single-threaded code it would
run alone, so the numbers do not depend on the split.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

import torch
from torch import Tensor

from lthlib.training.population.stack_eval import EvalSet


class Optimizer(Protocol):
    """A part's optimizer (:class:`lthlib.training.schedule.StackedOptimizer`)."""

    def step(self, lr: float) -> None: ...


class Part(Protocol):
    """One stack of members: the dense (:mod:`lthlib.training.population.dense_stack`) or sparse path.
    A step is ``gradients(x, y)`` then ``opt.step(lr)``."""

    k: int
    opt: Optimizer

    def gradients(self, x: Tensor, y: Tensor) -> None: ...

    def evaluate(self, data: EvalSet) -> tuple[list[float], list[float]]: ...

    def snapshot(self) -> Any: ...

    def final_states(self) -> list[dict[str, Tensor]]: ...


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class ThreadedParts:
    """Parts stepped and evaluated together; members in part order. Call :meth:`close`.

    Steps do not wait: the caller steps part 0 on its own thread while every other part's
    steps queue up on that part's thread (at most ``ahead`` of them), so a part that is
    briefly slower (a core taken by another process) delays no one until the next
    evaluation. Evaluation, snapshots and final states wait for every queued step first.
    """

    def __init__(self, parts: Sequence[Part], intra_threads: int = 1, ahead: int = 8) -> None:
        if not parts:
            raise ValueError("ThreadedParts needs at least one part")
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self.parts = list(parts)
        self.k = sum(p.k for p in self.parts)
        self._jobs: list[queue.Queue[Any]] = [queue.Queue(maxsize=ahead)
                                              for _ in self.parts[1:]]
        self._done: list[queue.Queue[Any]] = [queue.Queue() for _ in self.parts[1:]]
        self._threads = [threading.Thread(target=self._serve, args=(jobs, done, intra_threads),
                                          daemon=True)
                         for jobs, done in zip(self._jobs, self._done)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _serve(jobs: queue.Queue[Any], done: queue.Queue[Any], intra_threads: int) -> None:
        """Run queued (call, reply) jobs in order; after a failed step, skip steps and hand
        the error to the next job that replies."""
        torch.set_num_threads(intra_threads)
        error: BaseException | None = None
        while True:
            job = jobs.get()
            if job is None:
                return
            call, reply = job
            if error is None:
                try:
                    result = call()
                except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                    error, result = exc, None
            if reply:
                done.put(_Failed(error) if error is not None else result)

    def _run(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """``calls[i]()`` on part i's thread, all at once; their results in order once every
        part is done (and every queued step before them)."""
        for jobs, call in zip(self._jobs, calls[1:]):
            jobs.put((call, True))
        try:
            first = calls[0]()
        except BaseException as exc:  # noqa: BLE001 - raised once the others are done
            first = _Failed(exc)
        out = [first] + [done.get() for done in self._done]
        for result in out:
            if isinstance(result, _Failed):
                raise result.error
        return out

    def queue_steps(self, x: Sequence[Tensor], y: Sequence[Tensor], lr: float) -> None:
        """One update of every part but part 0 (``x[i]``, ``y[i]``: part i's batch), queued
        to their threads and not waited for. Part 0 is the caller's to step, with ``x[0]``,
        ``y[0]``: ``parts[0].gradients(x[0], y[0])`` then ``parts[0].opt.step(lr)``."""
        for jobs, part, xb, yb in zip(self._jobs, self.parts[1:], x[1:], y[1:]):
            jobs.put((partial(self._step_part, part, xb, yb, lr), False))

    @staticmethod
    def _step_part(part: Part, x: Tensor, y: Tensor, lr: float) -> None:
        """One update of a part on its own thread: the same two calls the engine's loop
        makes for part 0."""
        part.gradients(x, y)
        part.opt.step(lr)

    def evaluate(self, data: EvalSet) -> tuple[list[float], list[float]]:
        """Every member's loss and accuracy, the parts evaluated at once."""
        losses: list[float] = []
        accs: list[float] = []
        for loss, acc in self._run([lambda p=p: p.evaluate(data) for p in self.parts]):
            losses += loss
            accs += acc
        return losses, accs

    def snapshot(self) -> Snapshots:
        """Frozen copies of every part, for evaluation beside training."""
        return Snapshots(self._run([p.snapshot for p in self.parts]))

    def final_states(self) -> list[dict[str, Tensor]]:
        """Every member's final weights, in part order."""
        return [state for states in self._run([p.final_states for p in self.parts])
                for state in states]

    def close(self) -> None:
        """Stop the helper threads (queued steps are finished first)."""
        for jobs in self._jobs:
            jobs.put(None)
        for t in self._threads:
            t.join()


class Snapshots:
    """Frozen copies of several parts, evaluated one after the other."""

    def __init__(self, snapshots: list[Any]) -> None:
        self.snapshots = snapshots
        self.k = sum(s.k for s in snapshots)

    def evaluate(self, data: EvalSet) -> tuple[list[float], list[float]]:
        losses: list[float] = []
        accs: list[float] = []
        for snap in self.snapshots:
            loss, acc = snap.evaluate(data)
            losses += loss
            accs += acc
        return losses, accs

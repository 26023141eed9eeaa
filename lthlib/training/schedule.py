"""The schedule of one training run: learning rate per update, evaluation points, optimizer.

A single network (:func:`lthlib.training.one_network.train`), a stack of them (:mod:`lthlib.training.population.engine`) and a
grouped ResNet (:mod:`lthlib.training.conv_engine`) must follow the same schedule number for number,
so it is written once, here: warmup and step decay of the learning rate, the iterations at
which the paper evaluates, and the optimizer with the kernels (fused Adam, foreach SGD) whose
rounding every path shares.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from lthlib.config.paper import TrainConfig

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def lr_factor(iteration: int, cfg: TrainConfig) -> float:
    """Multiplier on cfg.lr for update number ``iteration`` (0-based): warmup x step decay."""
    warm = min(1.0, (iteration + 1) / cfg.warmup) if cfg.warmup > 0 else 1.0
    drops = sum(1 for m in cfg.milestones if iteration >= m)
    return warm * cfg.gamma ** drops


def eval_iterations(cfg: TrainConfig) -> list[int]:
    """Iterations at which the paper evaluates: 0, every eval_every, and the last one."""
    its = list(range(0, cfg.iterations + 1, cfg.eval_every))
    if its[-1] != cfg.iterations:
        its.append(cfg.iterations)
    return its


def make_optimizer(params: Iterable[Tensor], cfg: TrainConfig,
                   device: torch.device | None = None, *,
                   foreach: bool | None = None) -> torch.optim.Optimizer:
    """The paper's optimizer: Adam for LeNet/Conv, SGD with momentum for ResNet/VGG.

    Adam is fused where this torch has it (much faster on CPU and CUDA). ``foreach`` is
    passed to SGD: the same per-tensor arithmetic as its loop, in fewer calls. ``device``
    is not needed (the optimizer follows its parameters) and kept for existing callers.
    """
    params = list(params)
    if cfg.optimizer == "adam":
        try:
            return torch.optim.Adam(params, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS,
                                    weight_decay=cfg.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if foreach:
        try:
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, foreach=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig,
                   start: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of :func:`lr_factor` as a torch scheduler.

    ``start`` > 0 resumes the schedule at update ``start`` (late rewinding trains from
    iteration k to T): the first step uses ``lr_factor(start)``, warmup and decay included."""
    if start < 0 or start >= max(cfg.iterations, 1):
        raise ValueError(f"schedule start {start} is outside the run; allowed: 0.."
                         f"{max(cfg.iterations - 1, 0)}")
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i + start, cfg))


class StackedOptimizer:
    """The update :func:`make_optimizer`'s optimizer makes, over given (param, grad) tensors.

    The engines hand it per-member views of stacked parameters: torch's kernels then split
    the work (vector body, scalar tail) exactly as for one network, so each member's update
    is bit for bit the single network's. For Adam, ``torch._fused_adam_`` is called directly
    with one shared step counter, which removes torch.optim's per-tensor Python bookkeeping
    (a large share of a small step on CPU); torch.optim is the fallback where it is missing.
    """

    def __init__(self, params: list[Tensor], grads: list[Tensor], cfg: TrainConfig) -> None:
        self.cfg, self.params, self.grads = cfg, params, grads
        self.opt: torch.optim.Optimizer | None = None
        self.fused = False
        if cfg.optimizer == "adam":
            self.exp_avgs = [torch.zeros_like(p) for p in params]
            self.exp_avg_sqs = [torch.zeros_like(p) for p in params]
            self.step_count = torch.zeros((), dtype=torch.float32, device=params[0].device)
            self.steps = [self.step_count] * len(params)
            # the kernel's arguments that never change, built once: step passes them as is
            self.fixed: dict[str, object] = dict(
                amsgrad=False, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],
                weight_decay=cfg.weight_decay, eps=ADAM_EPS, maximize=False, grad_scale=None,
                found_inf=None)
            self.fused = hasattr(torch, "_fused_adam_") and self._fused_works(params[0])
            if self.fused:
                return
        for p, g in zip(params, grads):
            p.grad = g
        self.opt = make_optimizer(params, cfg, foreach=True)

    def _fused_works(self, like: Tensor) -> bool:
        """Whether this torch has a fused Adam kernel for the device (probe on scratch)."""
        probe = [[torch.ones(3, dtype=like.dtype, device=like.device)] for _ in range(4)]
        try:
            torch._fused_adam_(*probe, [], [torch.ones((), device=like.device)], lr=1e-3,
                               **self.fixed)
        except (RuntimeError, TypeError, NotImplementedError):
            return False
        return True

    def step(self, lr: float) -> None:
        """One update of every tensor at learning rate ``lr``: the kernel is called from
        here, one call below the training loop."""
        if self.fused:
            self.step_count.add_(1)
            torch._fused_adam_(self.params, self.grads, self.exp_avgs, self.exp_avg_sqs, [],
                               self.steps, lr=lr, **self.fixed)
            return
        assert self.opt is not None
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()

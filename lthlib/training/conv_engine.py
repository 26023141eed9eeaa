"""Several CIFAR ResNets trained at once as one grouped network (the population idea for convs).

One small ResNet at batch 128 leaves a GPU mostly idle: its 16-64 channel convolutions are
too thin, and every layer pays Python and dispatch overhead once per network. ``G`` networks
of one stage are therefore packed into one module whose convolutions have
``groups=G`` (network g owns channels ``g*C .. (g+1)*C - 1`` of every layer), whose BatchNorm
layers have ``G*C`` channels (per-channel statistics: exactly each network's own), and whose
last layer is a batched matrix product. Network g sees its own minibatch in its own input
channels, and the loss is the sum of the networks' mean losses, so every network gets exactly
its own gradient; SGD with momentum and weight decay acts element by element, so the packed
update is each network's update. Masks multiply the weights as ``torch.nn.utils.prune`` does
(``weight_orig * weight_mask``). Numerics equal :func:`lthlib.training.one_network.train` up to float
rounding (other convolution kernels), which ``tests/training/test_conv_engine.py`` checks.

The memory layout is channels_last, which oneDNN runs faster on CPU (its backward kernels
especially); ``bf16=True`` runs the forward pass under bfloat16 autocast (CPUs with
AMX/AVX512-BF16, and GPUs): a change of numerics that is a config field
(``ExperimentConfig.precision``), never the default. ``compiled=True`` sends the forward pass
and loss through torch.compile, whose fused BatchNorm/ReLU/add kernels save the memory passes
that eager mode makes around every convolution; it changes float rounding only, costs a
compile of about 40 s per process, and is off unless asked for. ``python -m lthlib.bench
--conv`` measures each of these against a textbook loop.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lthlib.config.paper import TrainConfig
from lthlib.util.atomic import atomic_save
from lthlib.training.one_network import EvalHook, EvalPoint
from lthlib.data.datasets import TensorSplit, augment_batch, batch_indices
from lthlib.util.device import warn_if_bf16_emulated
from lthlib.training.schedule import eval_iterations, make_optimizer, make_scheduler
from lthlib.store.history import HISTORY_COLUMNS, early_stop_summary

State = dict[str, Tensor]
Masks = dict[str, Tensor]

SUPPORTED = ("resnet18",)


def supports(arch: str) -> bool:
    return arch in SUPPORTED


class _GConv(nn.Module):
    """G convolutions of one shape as one grouped convolution, with an optional mask."""

    def __init__(self, groups: int, c_in: int, c_out: int, k: int, stride: int,
                 padding: int) -> None:
        super().__init__()
        self.g, self.stride, self.padding = groups, stride, padding
        self.weight = nn.Parameter(torch.empty(groups * c_out, c_in, k, k))
        self.register_buffer("mask", None)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.mask is None else self.weight * self.mask
        return F.conv2d(x, w, None, self.stride, self.padding, 1, self.g)


class _GBlock(nn.Module):
    def __init__(self, g: int, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _GConv(g, c_in, c_out, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(g * c_out)
        self.conv2 = _GConv(g, c_out, c_out, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(g * c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(_GConv(g, c_in, c_out, 1, stride, 0),
                                          nn.BatchNorm2d(g * c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        # In place (same values bit for bit): BatchNorm's backward needs its input, not its
        # output, and ReLU's backward reads the sign of its result; no 6 MB temporaries.
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return self.relu(out)


class GroupedResNet(nn.Module):
    """``G`` copies of :class:`lthlib.nets.paper_networks.CifarResNet` as one module (same parameter names,
    weights stacked along the output channels)."""

    def __init__(self, groups: int, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.g = groups
        self.conv1 = _GConv(groups, in_channels, 16, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(groups * 16)
        c_in = 16
        for stage, c_out in enumerate((16, 32, 64), start=1):
            blocks = [_GBlock(groups, c_in if i == 0 else c_out, c_out,
                              2 if (i == 0 and stage > 1) else 1) for i in range(3)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            c_in = c_out
        self.fc_weight = nn.Parameter(torch.empty(groups, num_classes, 64))
        self.fc_bias = nn.Parameter(torch.empty(groups, num_classes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (N, G*C, H, W), network g's images in channels g*C..; returns (N, G, classes)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1).view(x.shape[0], self.g, 64)
        return torch.einsum("ngc,goc->ngo", pooled, self.fc_weight) + self.fc_bias


def _conv_names(net: nn.Module) -> list[str]:
    return [n for n, m in net.named_modules() if isinstance(m, _GConv)]


def pack(states: Sequence[State], masks: Sequence[Masks | None], in_channels: int,
         num_classes: int = 10, device: torch.device | str = "cpu") -> GroupedResNet:
    """One grouped network holding ``states`` (plain CifarResNet state dicts) and masks."""
    g = len(states)
    net = GroupedResNet(g, in_channels, num_classes)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("mask"):
                continue
            if name == "fc_weight":
                tensor.copy_(torch.stack([s["fc.weight"] for s in states]))
            elif name == "fc_bias":
                tensor.copy_(torch.stack([s["fc.bias"] for s in states]))
            elif name.endswith("num_batches_tracked"):
                tensor.copy_(states[0][name])
            else:
                tensor.copy_(torch.cat([s[name] for s in states]))
        for name in _conv_names(net):
            if any(m is not None and name in m for m in masks):
                per = [m[name] if m is not None and name in m
                       else torch.ones_like(states[i][f"{name}.weight"])
                       for i, m in enumerate(masks)]
                net.get_submodule(name).mask = torch.cat(per)
    net = net.to(device=device, memory_format=torch.channels_last)
    return net


def unpack(net: GroupedResNet) -> list[State]:
    """Plain CifarResNet state dicts (masked weights zero, as ``plain_state`` gives)."""
    g = net.g
    masks = {f"{n}.weight": net.get_submodule(n).mask for n in _conv_names(net)}
    out: list[State] = [{} for _ in range(g)]
    for name, tensor in net.state_dict().items():
        if name.endswith(".mask"):
            continue
        t = tensor.detach().cpu()
        if name in masks and masks[name] is not None:
            t = t * masks[name].detach().cpu()
        if name == "fc_weight" or name == "fc_bias":
            key = "fc.weight" if name == "fc_weight" else "fc.bias"
            for i in range(g):
                out[i][key] = t[i].clone()
        elif name.endswith("num_batches_tracked"):
            for i in range(g):
                out[i][name] = t.clone()
        else:
            for i, part in enumerate(t.chunk(g)):
                out[i][name] = part.contiguous().clone()
    return out


@dataclass
class ConvResult:
    history: pd.DataFrame
    final_state: State
    early_stop: dict[str, float]
    wall_time: float


def _stack_inputs(xs: Sequence[Tensor]) -> Tensor:
    return torch.cat(list(xs), dim=1).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def _evaluate(net: GroupedResNet, x: Tensor, y: Tensor, bf16: bool,
              batch: int = 1000) -> list[tuple[float, float]]:
    """Every network on the same (x, y): (mean loss, accuracy) per network."""
    net.eval()
    g = net.g
    loss = torch.zeros(g, dtype=torch.float64)
    correct = torch.zeros(g, dtype=torch.int64)
    for i in range(0, len(y), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        xg = xb.repeat(1, g, 1, 1).contiguous(memory_format=torch.channels_last)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(xg)
        logits = logits.float()
        for j in range(g):
            loss[j] += F.cross_entropy(logits[:, j], yb, reduction="sum").item()
            correct[j] += int((logits[:, j].argmax(1) == yb).sum())
    net.train()
    return [(float(loss[j]) / len(y), int(correct[j]) / len(y)) for j in range(g)]


def group_loss(net: GroupedResNet, x: Tensor, ys: Tensor, bf16: bool) -> Tensor:
    """The sum of each network's mean cross-entropy on its own batch (``ys``: (N, G)), so
    that backward gives every network exactly its own gradient."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = net(x)
    logits = logits.float()
    return sum((F.cross_entropy(logits[:, j], ys[:, j]) for j in range(net.g)),
               torch.zeros((), device=x.device))


LossFn = Callable[[GroupedResNet, Tensor, Tensor, bool], Tensor]


def loss_function(compiled: bool) -> LossFn:
    """:func:`group_loss`, or its torch.compile'd form (inductor fuses BatchNorm, ReLU and the
    residual adds around the convolutions; measured 1.17x at one CPU thread). Compiling is
    lazy: :func:`train_group` falls back to eager if the first compiled call fails."""
    if not compiled:
        return group_loss
    try:
        return torch.compile(group_loss, dynamic=False)
    except (RuntimeError, ImportError) as err:  # no dynamo on this platform or Python
        warnings.warn(f"torch.compile unavailable ({err}); training eagerly", stacklevel=2)
        return group_loss


def train_group(inits: Sequence[State], masks: Sequence[Masks | None], data: TensorSplit,
                cfg: TrainConfig, batch_seeds: Sequence[int],
                device: torch.device | str = "cpu", augment: bool = False,
                bf16: bool = False, progress: bool | str = False,
                compiled: bool = False, start: int = 0,
                checkpoint: str | os.PathLike | None = None,
                on_eval: EvalHook | None = None) -> list[ConvResult]:
    """Train ``len(inits)`` ResNets at once; per network the same history, early stop and final
    state that :func:`lthlib.training.one_network.train` gives (up to float rounding). ``compiled`` runs the
    forward pass and loss through torch.compile (other float rounding; see
    :func:`loss_function`). ``start`` = k trains iterations k..T-1 only (late rewinding): the
    schedule, the batch order and the augmentation resume at k, the optimizer state is fresh,
    and the history starts with an evaluation at k.

    ``checkpoint``: a file where the whole training state (weights, optimizer, schedule,
    history, seconds so far) is written atomically after every evaluation before the last,
    and from which a later call with the same arguments resumes bit for bit; it is removed
    when the run ends. ``on_eval`` is called after every evaluation
    (:class:`lthlib.training.one_network.EvalPoint`); when it returns True training stops
    there, the checkpoint is written, and the results describe the networks at that point.
    Without either, nothing changes."""
    if not (len(inits) == len(masks) == len(batch_seeds)) or not inits:
        raise ValueError(f"inits, masks and batch_seeds must be equal non-empty lists, got "
                         f"{len(inits)}, {len(masks)}, {len(batch_seeds)}")
    if cfg.optimizer != "sgd":
        raise ValueError(f"the grouped conv engine trains with sgd (ResNet's optimizer), got "
                         f"{cfg.optimizer!r}; allowed: 'sgd'")
    device = torch.device(device)
    if bf16:
        warn_if_bf16_emulated(device)
    g = len(inits)
    net = pack(inits, masks, data.in_shape[0], data.num_classes, device)
    opt = make_optimizer(net.parameters(), cfg)  # the optimizer train() uses, same rounding
    sched = make_scheduler(opt, cfg, start)
    rows: list[list[dict[str, float]]] = [[] for _ in range(g)]
    first, elapsed_before = start, 0.0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    key = _run_key(inits, masks, cfg, batch_seeds, start, augment, bf16)
    if ckpt is not None and ckpt.exists():
        first, elapsed_before, rows = _resume(ckpt, key, net, opt, sched, g)
    X, Y = data.train_x.to(device), data.train_y.to(device)
    streams = [batch_indices(len(Y), cfg.batch_size, s, first) for s in batch_seeds]
    sets = {"train": (data.train_eval_x.to(device), data.train_eval_y.to(device)),
            "val": (data.val_x.to(device), data.val_y.to(device)),
            "test": (data.test_x.to(device), data.test_y.to(device))}
    evals = {i for i in eval_iterations(cfg) if i >= start} | {start}
    loss_fn = loss_function(compiled)
    bar = None
    if progress:
        bar = tqdm(total=cfg.iterations, initial=first, unit="it", leave=False,
                   desc=progress if isinstance(progress, str) else "train")
    t0 = time.perf_counter()
    stop = False
    net.train()
    for it in range(first, cfg.iterations + 1):
        if it in evals and not (rows[0] and rows[0][-1]["iteration"] == it):
            per = {name: _evaluate(net, x, y, bf16) for name, (x, y) in sets.items()}
            for j in range(g):
                row: dict[str, float] = {"iteration": it}
                for name in ("train", "val", "test"):
                    row[f"{name}_loss"], row[f"{name}_acc"] = per[name][j]
                rows[j].append(row)
            elapsed = elapsed_before + time.perf_counter() - t0
            if on_eval is not None:
                point = EvalPoint(it, [list(r) for r in rows], elapsed, it == cfg.iterations)
                stop = bool(on_eval(point)) and it < cfg.iterations
            if ckpt is not None and it < cfg.iterations:
                state = {"key": key, "net": net.state_dict(), "opt": opt.state_dict(),
                         "sched": sched.state_dict(), "iteration": it, "elapsed_s": elapsed,
                         "history": torch.tensor([[[r[c] for c in HISTORY_COLUMNS] for r in rs]
                                                  for rs in rows], dtype=torch.float64)}
                atomic_save(ckpt, lambda tmp: torch.save(state, tmp))
        if it == cfg.iterations or stop:
            break
        idx = [next(s).to(device) for s in streams]
        xs, ys = [X[i] for i in idx], torch.stack([Y[i] for i in idx], dim=1)
        if augment:
            xs = [augment_batch(x, torch.Generator(device=x.device).manual_seed(
                s * 1_000_003 + it)) for x, s in zip(xs, batch_seeds)]
        try:
            loss = loss_fn(net, _stack_inputs(xs), ys, bf16)
        except Exception as err:  # compiling failed (no C++ compiler, ...): train eagerly
            if loss_fn is group_loss:
                raise
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); training "
                          f"eagerly", stacklevel=2)
            loss_fn = group_loss
            loss = loss_fn(net, _stack_inputs(xs), ys, bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    if ckpt is not None and not stop:
        ckpt.unlink(missing_ok=True)
    states = unpack(net)
    out = []
    for j in range(g):
        hist = pd.DataFrame(rows[j], columns=HISTORY_COLUMNS)
        hist["iteration"] = hist["iteration"].astype(int)
        out.append(ConvResult(hist, states[j], early_stop_summary(hist), wall / g))
    return out


def _run_key(inits: Sequence[State], masks: Sequence[Masks | None], cfg: TrainConfig,
             batch_seeds: Sequence[int], start: int, augment: bool, bf16: bool) -> str:
    """What a checkpoint must have been written by: the arguments and a digest of the
    starting weights and masks."""
    digest = hashlib.sha256()
    for tensors in (*inits, *(m or {} for m in masks)):
        for name in sorted(tensors):
            raw = tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8)
            digest.update(name.encode() + raw.numpy().tobytes())
    return json.dumps({"train": asdict(cfg), "batch_seeds": list(batch_seeds), "start": start,
                       "augment": augment, "bf16": bf16, "inits": digest.hexdigest()},
                      sort_keys=True)


def _resume(ckpt: Path, key: str, net: GroupedResNet, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LambdaLR, g: int
            ) -> tuple[int, float, list[list[dict[str, float]]]]:
    """Load a :func:`train_group` checkpoint into ``net``, ``opt`` and ``sched``; returns
    (iteration, seconds so far, history rows per network). A checkpoint of other arguments
    is refused with the file named (it would train another run)."""
    try:
        blob = torch.load(ckpt, map_location=next(net.parameters()).device, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"{ckpt} is no readable checkpoint ({type(err).__name__}); allowed: "
                         f"a checkpoint train_group wrote (remove it to train from the "
                         f"start)") from None
    if not isinstance(blob, dict) or blob.get("key") != key:
        raise ValueError(f"{ckpt} is not a checkpoint of this run (other arguments or an "
                         f"older format); allowed: the same call's checkpoint (remove it to "
                         f"train from the start)")
    net.load_state_dict(blob["net"])
    opt.load_state_dict(blob["opt"])
    sched.load_state_dict(blob["sched"])
    history = blob["history"].tolist()
    rows = [[dict(zip(HISTORY_COLUMNS, r)) for r in history[j]] for j in range(g)]
    for rs in rows:
        for r in rs:
            r["iteration"] = int(r["iteration"])
    return int(blob["iteration"]), float(blob["elapsed_s"]), rows


def group_size(device: torch.device | str, members: int, default_cpu: int = 1) -> int:
    """How many networks to pack at once: all of a stage on a GPU; one on a CPU, where
    ``python -m lthlib.bench --conv`` measured no gain from grouping at float32 (oneDNN's
    grouped kernels are slower per network) and one network per group keeps a trial's
    numbers independent of how many trials train beside it."""
    if torch.device(device).type == "cuda":
        return max(1, members)
    return max(1, min(members, default_cpu))


__all__ = ["GroupedResNet", "pack", "unpack", "train_group", "supports", "group_size",
           "ConvResult", "group_loss", "loss_function"]

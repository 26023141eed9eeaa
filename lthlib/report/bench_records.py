"""The performance page, computed from the stored bench records: every ratio with its machine.

A speed depends on the machine and on what else ran on it, so the documentation quotes no
bench number by hand. :func:`bench_records` reads ``runs/bench/*.json`` into one tidy row per
ratio (with the record's hardware, date and conditions), :func:`render_markdown` turns the
rows into ``docs/performance.md``, and
``python -m lthlib.report.bench_records --write docs/performance.md`` regenerates the page
after a new record (``tests/report/test_bench_records.py`` checks that the committed page is current).
"""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lthlib.util.atomic import atomic_write_text

COLUMNS = ["record", "benchmark", "date", "hardware", "conditions", "setting", "field",
           "meaning", "value", "source"]
GENERATOR = "python -m lthlib.report.bench_records --write docs/performance.md"


@dataclass(frozen=True)
class Benchmark:
    """One kind of bench record: how to recognise it, what it compares, which ratios it holds.

    ``ratios`` are (field, meaning); a field ``a / b`` is computed here from two stored
    fields (rounded to two decimals) because the record holds both but not their ratio."""

    kind: str
    title: str
    command: str
    marker: str  # a field that only this kind's records hold
    explanation: str
    ratios: tuple[tuple[str, str], ...]


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "lenet-loops", "LeNet training loops", "python -m lthlib bench --quick --json",
        "ratio_plain",
        "LeNet on MNIST with the paper's Adam and minibatch size, three loops timed in one "
        "run. The *DataLoader loop* is what most lottery-ticket code runs: torchvision's "
        "MNIST with `ToTensor` through a `DataLoader`. The *plain loop* is the best a plain "
        "script does: the training set as in-memory tensors and fused Adam, at its best thread "
        "count. The *engine* is lthlib's population engine: several networks stacked, forward "
        "and backward written out, one optimizer step for all; its speed is in "
        "model-iterations per second, so a population's ratio says how much more training the "
        "machine does per second. The single-network rows put one network in the engine "
        "against the plain loop at the same thread count, timed in alternation so that both "
        "see the same load. Where other work held the cores (see the load average), a "
        "multi-threaded plain loop can collapse; the one-thread rows are then the fair ones.",
        (("ratio", "engine, best population / DataLoader loop"),
         ("ratio_plain", "engine, best population / plain loop"),
         ("engine_own_batches_it_s / plain_it_s",
          "engine, best population with each member's own minibatches / plain loop"),
         ("ratio_plain_per_core",
          "engine, a population of four on one thread / plain loop on one thread"),
         ("ratio_k1_plain", "one network: engine / plain loop, at the record's thread count"),
         ("ratio_k1_plain_1thread", "one network: engine / plain loop, both on one thread"))),
    Benchmark(
        "imp-trial-vs-reference", "A whole IMP trial against a plain reference",
        "python -m lthlib bench --imp-trial quick --json", "reference_s",
        "One whole LeNet/MNIST IMP trial (every ticket level and its re-initialised control) "
        "run two ways side by side, one single-threaded process each: lthlib (`lth.run`) and "
        "a plain reference written in the bench (in-memory tensors, fused Adam, "
        "`torch.nn.utils.prune` masks, the same evaluation schedule, one network at a time). "
        "Wall time is what a user waits for; CPU time shows how much of its core each process "
        "got, which matters when other work shared the machine. The setting lists both mean "
        "early-stop test accuracies, so the speed is not bought with other results.",
        (("ratio", "wall time: reference / lthlib"),
         ("reference_cpu_s / trial_cpu_s", "CPU time: reference / lthlib"))),
    Benchmark(
        "sparse-levels", "Sparse against dense path, level by level",
        "python -m lthlib bench --sparse --json", "levels",
        "One LeNet at every IMP level, trained on the engine's dense path and on its sparse "
        "path (CSR forward, weight gradients only at the remaining positions, an optimizer "
        "over the remaining weights). The engine takes the sparse path for a member with a "
        "layer at or below the threshold in the setting. Each level's ratio is sparse over "
        "dense iterations per second; the sweep ratio weighs the levels as a whole IMP sweep "
        "does, the same number of iterations at every level: training time dense only over "
        "training time with the engine's own choice of path per level.",
        (("sweep_ratio", "whole IMP sweep: dense-only time / time with the engine's choice"),)),
    Benchmark(
        "sparse-trial", "A whole IMP trial with and without the sparse path",
        "python -m lthlib bench --sparse-trial quick --json", "dense_wall_s",
        "One real LeNet/MNIST IMP trial trained twice side by side, once with the sparse path "
        "switched off and once with the engine's threshold. The two runs round floats "
        "differently, so the setting also lists how far their final test accuracies drifted "
        "apart (percentage points) and for how many networks the early-stop iteration agrees.",
        (("speedup", "wall time: dense only / with the sparse path"),)),
    Benchmark(
        "conv", "ResNet-18 loops", "python -m lthlib bench --conv --json", "conv_plain_it_s",
        "ResNet-18 on the dataset in the setting, float32 unless a row says otherwise. The "
        "*plain loop* is what a newcomer writes: one network in NCHW, `torch.optim.SGD`, a "
        "`DataLoader` over torchvision's dataset with `ToTensor`, at torch's default thread "
        "count. Against it: the conv engine the experiments use (channels_last, tensors in "
        "memory, ReLU and residual add in place) in one process, the same loop through "
        "`torch.compile`, the same under bfloat16 autocast where the CPU has native bf16, and "
        "one single-threaded engine process per core side by side, which is how the long "
        "experiments run. Two bounds close the list: the *ceiling* loop (the side-by-side "
        "engine on the same network with every BatchNorm and ReLU removed, which trains "
        "nothing useful) and the plain loop's arithmetic at the machine's measured float32 "
        "matmul rate, a roof that no float32 loop doing the same work can pass. Rows a record "
        "lacks were not measured by the bench version that wrote it.",
        (("speedup_fp32", "engine as the experiments run it (on a CPU: one single-threaded "
                          "process per core, side by side) / plain loop"),
         ("speedup_fp32_one_process", "engine, one process / plain loop"),
         ("speedup_fp32_compiled_one_process",
          "engine through torch.compile, one process / plain loop"),
         ("speedup_bf16_one_process", "engine under bfloat16 autocast, one process / plain "
                                      "loop"),
         ("speedup_ceiling", "ceiling loop (no BatchNorm, no ReLU), side by side / plain loop"),
         ("speedup_at_sgemm_peak", "plain loop's arithmetic at the sgemm rate / plain loop"))),
    Benchmark(
        "conv-precision", "ResNet-18 in float32 and bfloat16",
        "python -m lthlib bench --conv-precision --json", "bf16_over_fp32",
        "The conv engine's ResNet-18 step on one thread, in float32 and under bfloat16 "
        "autocast, on the CPU the record names (the setting says whether it has native "
        "bf16). A ratio below one means bfloat16 is slower there: the CPU emulates it, which "
        "is why lthlib warns when bfloat16 runs on such hardware.",
        (("bf16_over_fp32", "bfloat16 / float32 iterations per second"),)),
    Benchmark(
        "sparse-inference", "Sparse against dense inference of pruned networks",
        "python -m lthlib bench --sparse-inference --json", "sparse_pays",
        "A pruned LeNet and the paper's ResNet-18 at several levels of IMP, each evaluated "
        "as the masked dense network and as its sparse form (CSR linear layers, unfold + CSR "
        "convolutions), every configuration in a fresh single-threaded process. Per level: "
        "the latency of one image, the throughput of large batches (the setting's size) and "
        "the peak memory of such a batch, each as dense over sparse time (above one: sparse is faster; the "
        "memory ratio is sparse over dense, above one: sparse needs more), and the size of "
        "the sparse export over the dense state_dict.",
        ()),
)

# record fields shown as the setting a ratio was measured in, in this order
SETTING_FIELDS = (
    ("dataset", "dataset"), ("profile", "profile"), ("networks", "networks"),
    ("threads", "torch threads"), ("population", "best population"),
    ("batches", "minibatches"), ("batch_size", "batch size"), ("batch", "batch size"),
    ("side_by_side_processes", "processes side by side"),
    ("threshold", "sparse threshold (density)"),
    ("sparse_path_below_density", "sparse threshold (density)"),
    ("native_bf16", "native bf16"),
    ("mean_early_stop_test_acc", "mean early-stop test accuracy, lthlib"),
    ("reference_mean_early_stop_test_acc", "mean early-stop test accuracy, reference"),
    ("max_abs_diff_final_test_acc_pp", "largest final test accuracy drift (pp)"),
    ("mean_abs_diff_final_test_acc_pp", "mean final test accuracy drift (pp)"),
    ("early_stop_iteration_equal", "networks with the same early-stop iteration"),
)
# what shared the machine: load averages (first entry of a list: the 1-minute value)
CONDITION_FIELDS = (
    ("cpu_idle_fraction_before", "CPU idle fraction before"),
    ("loadavg_1min_before_after", "load average before, after"),
    ("load_avg_1min_at_start", "load average at start"),
    ("load_avg_at_start", "load average at start"),
    ("load_avg_when_lthlib_ended", "load average when lthlib ended"),
    ("load_avg_when_reference_ended", "load average when the reference ended"),
    ("load_avg_1min", "load average at the end"),
)


def benchmark_of(record: dict[str, Any], name: str) -> Benchmark:
    """The kind of a record, recognised by its marker field."""
    for bench in BENCHMARKS:
        if bench.marker in record:
            return bench
    raise ValueError(f"bench record {name} holds none of the fields that name a benchmark; "
                     f"allowed: a record with one of {', '.join(b.marker for b in BENCHMARKS)}")


def record_date(record: dict[str, Any], name: str) -> pd.Timestamp:
    """When the record was measured (UTC), from ``date`` or ``started``."""
    raw = record.get("date", record.get("started"))
    if not isinstance(raw, str):
        raise ValueError(f"bench record {name} has no date ({raw!r}); allowed: an ISO time "
                         f"in 'date' or 'started'")
    stamp = pd.Timestamp(raw)
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def hardware_of(record: dict[str, Any]) -> str:
    """The machine in words: CPU, cores, features, GPU and torch, as the record states them."""
    hw = record.get("hardware")
    fields = {**(hw if isinstance(hw, dict) else {}), **record}
    parts = [hw] if isinstance(hw, str) else [str(fields.get("cpu", "CPU not recorded"))]
    if not isinstance(hw, str):
        if fields.get("cores"):
            parts.append(f"{fields['cores']} cores")
        if fields.get("cpu_features"):
            parts.append(" ".join(map(str, fields["cpu_features"])))
        parts.append(f"GPU {fields['gpu']}" if fields.get("gpu") else "no GPU")
    if fields.get("torch"):
        parts.append(f"torch {fields['torch']}")
    return ", ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _listed(record: dict[str, Any], fields: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{label} {_show(record[key])}" for key, label in fields
            if record.get(key) is not None]


def conditions_of(record: dict[str, Any]) -> str:
    """What shared the machine, in the record's own numbers and notes."""
    parts = _listed(record, CONDITION_FIELDS)
    if not parts and record.get("load_avg") is not None:
        parts.append(f"load average (1, 5, 15 min) {_show(record['load_avg'])}")
    parts += [str(record[k]) for k in ("conditions", "note") if record.get(k)]
    return "; ".join(parts) if parts else "not recorded"


def _ratios(bench: Benchmark, record: dict[str, Any]
            ) -> list[tuple[str, str, float | None, str]]:
    """(field, meaning, value, source) of every ratio the record holds."""
    out: list[tuple[str, str, float | None, str]] = []
    if bench.kind == "sparse-inference":
        for i, row in enumerate(record["ratios"]):
            where = f"{row['arch']} at Pm {100 * row['pm']:.1f}%"
            for key, what in (("latency_speedup", "batch-1 latency, dense / sparse"),
                              ("throughput_speedup", "batch-1000 throughput, sparse / dense"),
                              ("peak_memory_ratio", "peak memory, sparse / dense"),
                              ("size_ratio", "file size, sparse export / dense state_dict")):
                out.append((f"ratios[{i}].{key}", f"{where}: {what}", row[key], "stored"))
    if bench.kind == "sparse-levels":
        for i, level in enumerate(record["levels"]):
            out.append((f"levels[{i}].ratio", f"sparse / dense at IMP level {level['level']}, "
                        f"fc1 density {_show(level['fc1_density'])}", level["ratio"], "stored"))
    for field, meaning in bench.ratios:
        if " / " in field:
            top, bottom = field.split(" / ")
            if record.get(top) is None or not record.get(bottom):
                continue
            out.append((field, meaning, round(record[top] / record[bottom], 2), "computed"))
        elif field in record:
            out.append((field, meaning, record[field], "stored"))
    return out


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """One bench record (a JSON object)."""
    path = Path(path)
    record = json.loads(path.read_text())
    if not isinstance(record, dict):
        raise ValueError(f"bench record {path.name} is a JSON {type(record).__name__}; "
                         f"allowed: a JSON object")
    return record


def bench_records(bench_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per ratio of every ``*.json`` record in ``bench_dir``: the record's file name,
    benchmark kind, date (UTC), hardware, conditions and setting, the ratio's field (or
    ``a / b`` when computed here), its meaning and value (None: the record says not measured)."""
    rows = []
    for path in sorted(Path(bench_dir).glob("*.json")):
        record = read_record(path)
        bench = benchmark_of(record, path.name)
        common = {"record": path.name, "benchmark": bench.kind,
                  "date": record_date(record, path.name), "hardware": hardware_of(record),
                  "conditions": conditions_of(record),
                  "setting": "; ".join(_listed(record, SETTING_FIELDS)) or "not recorded"}
        for field, meaning, value, source in _ratios(bench, record):
            rows.append({**common, "field": field, "meaning": meaning, "value": value,
                         "source": source})
    return pd.DataFrame(rows, columns=COLUMNS)


def format_ratio(value: float | None) -> str:
    """A ratio as the page shows it: the record's number and an ``x``."""
    return "not measured" if value is None or pd.isna(value) else f"{value:g}x"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(table: pd.DataFrame) -> str:
    """``docs/performance.md``: per benchmark what it compares, then per record (newest
    first) its date, hardware, conditions and setting and a table of its ratios."""
    lines = [
        "# Performance", "",
        f"Generated from the bench records in `runs/bench/` by `{GENERATOR}`; do not edit it "
        "by hand. Each record is one run of `python -m lthlib bench` on the machine named "
        "with it. Speeds move with the machine and with whatever else ran on it, so this page "
        "shows ratios measured within one run, with the conditions of that run; compare "
        "records by their ratios, not across machines. Ratios marked *computed* are divided "
        "here from two fields of the record; all others are stored in it as they stand.", ""]
    for bench in BENCHMARKS:
        part = table[table.benchmark == bench.kind]
        if part.empty:
            continue
        lines += [f"## {bench.title}", "", f"`{bench.command}`", "", bench.explanation, ""]
        records = (part.drop_duplicates("record")
                   .sort_values(["date", "record"], ascending=[False, True]))
        for _, rec in records.iterrows():
            lines += [f"### `{rec.record}`", "",
                      f"- date: {rec.date:%Y-%m-%d %H:%M} UTC",
                      f"- hardware: {rec.hardware}",
                      f"- conditions: {rec.conditions}",
                      f"- setting: {rec.setting}", "",
                      "| field | ratio | value |", "| --- | --- | ---: |"]
            for _, row in part[part.record == rec.record].iterrows():
                note = " (computed)" if row.source == "computed" else ""
                lines.append(f"| `{row.field}` | {_cell(row.meaning)}{note} | "
                             f"{format_ratio(row.value)} |")
            lines.append("")
    return "\n".join(lines)


def write_performance_doc(bench_dir: str | os.PathLike, out: str | os.PathLike) -> str:
    """Render the records in ``bench_dir`` and write the page to ``out`` atomically."""
    text = render_markdown(bench_records(bench_dir))
    atomic_write_text(out, text)
    return text


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lthlib.report.bench_records [--bench-dir runs/bench] --write FILE``."""
    parser = argparse.ArgumentParser(prog="python -m lthlib.report.bench_records",
                                     description="Write docs/performance.md from the stored "
                                                 "bench records.")
    parser.add_argument("--bench-dir", default="runs/bench", help="folder of bench records")
    parser.add_argument("--write", metavar="FILE", help="write the page here (else print it)")
    args = parser.parse_args(argv)
    if args.write:
        write_performance_doc(args.bench_dir, args.write)
    else:
        print(render_markdown(bench_records(args.bench_dir)))


if __name__ == "__main__":
    main()

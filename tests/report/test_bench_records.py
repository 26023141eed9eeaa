"""docs/performance.md is computed from runs/bench/*.json: every ratio it shows is the
record's, and the committed page is the one the committed records give."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lthlib.report import bench_records as br

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "runs" / "bench"
PAGE = ROOT / "docs" / "performance.md"
ROW = re.compile(r"^\| `(?P<field>[^`]+)` \| .* \| (?P<value>[^|]+) \|$")
# names of things, not measurements
NAMES = re.compile(r"ResNet-18|float32|bfloat16|bf16|fc1")


def _field(record: dict, field: str) -> float | None:
    """A ratio straight from the JSON: ``levels[3].ratio``, ``ratios[2].size_ratio``, ``a / b``
    or a top-level key."""
    if " / " in field:
        top, bottom = field.split(" / ")
        return round(record[top] / record[bottom], 2)
    match = re.fullmatch(r"levels\[(\d+)\]\.ratio", field)
    if match:
        return record["levels"][int(match.group(1))]["ratio"]
    match = re.fullmatch(r"ratios\[(\d+)\]\.(\w+)", field)
    if match:
        return record["ratios"][int(match.group(1))][match.group(2)]
    return record[field]


def _page_ratios(text: str) -> list[tuple[str, str, str]]:
    """(record, field, value as shown) of every ratio row, under its ``### `record` `` head."""
    rows, record = [], None
    for line in text.splitlines():
        head = re.fullmatch(r"### `(.+\.json)`", line)
        if head:
            record = head.group(1)
        match = ROW.match(line)
        if match and record is not None:
            rows.append((record, match.group("field"), match.group("value").strip()))
    return rows


def test_every_ratio_on_the_page_is_the_records_value() -> None:
    rows = _page_ratios(PAGE.read_text())
    records = {p.name: json.loads(p.read_text()) for p in BENCH.glob("*.json")}
    assert {r for r, _, _ in rows} == set(records)  # every record is shown
    for record, field, shown in rows:
        want = _field(records[record], field)
        if want is None:
            assert shown == "not measured", (record, field)
        else:
            assert shown.endswith("x") and float(shown[:-1]) == want, (record, field, shown)


def test_committed_page_is_up_to_date_with_the_committed_records() -> None:
    fresh = br.render_markdown(br.bench_records(BENCH))
    assert PAGE.read_text() == fresh, f"regenerate with: {br.GENERATOR}"


def test_table_holds_hardware_and_date_of_every_record() -> None:
    table = br.bench_records(BENCH)
    assert list(table.columns) == br.COLUMNS
    assert table.groupby("record").hardware.nunique().eq(1).all()
    assert table.date.notna().all() and table.hardware.str.len().gt(0).all()
    assert set(table.benchmark) == {b.kind for b in br.BENCHMARKS}


def test_explanations_type_no_number() -> None:
    texts = [b.explanation for b in br.BENCHMARKS] + [m for b in br.BENCHMARKS
                                                      for _, m in b.ratios]
    for text in texts:
        assert not re.search(r"\d", NAMES.sub("", text)), text


def test_a_record_of_unknown_kind_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "odd.json").write_text(json.dumps({"date": "2026-12-01T00:00Z", "speed": 1}))
    with pytest.raises(ValueError, match=r"^bench record odd\.json holds none") as err:
        br.bench_records(tmp_path)
    assert "\n" not in str(err.value)


def test_write_is_the_rendered_page(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    text = br.write_performance_doc(BENCH, out)
    assert out.read_text() == text == br.render_markdown(br.bench_records(BENCH))

"""lclib.measurements: device-run files read back and drawn against lclib's line.

The fixture (tests/data/measurements, written by its make.py) is shaped like a device run on
an H200, with timings made from known fractions of the datasheet peaks: MFU 0.6 (linear) and
0.4 (attention), 80% of HBM bandwidth for decode, 75% for SDPA's fp8 baseline.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lclib import measurements

FIXTURE = Path(__file__).parent / "data" / "measurements"
ROOT = Path(__file__).resolve().parents[1]
# the experiment each chapter's "measured vs model" cell draws
CHAPTERS = {"ch01-crossover": "crossover", "ch02-kv-wall": "decode",
            "ch03-context-parallelism": "ring", "ch04-prefix-and-chunking": "prefix_reuse",
            "ch05-fp8-kv": "fp8_decode", "ch06-yarn": "rope", "ch08-case-study": "niah"}


@pytest.mark.parametrize(("chapter", "experiment"), CHAPTERS.items())
def test_every_chapter_draws_the_fixture(chapter, experiment):
    shown = measurements.show(experiment, directory=FIXTURE)
    html = shown._repr_html_()
    assert html.startswith("<figure><img src=\"data:image/png;base64,") and len(html) > 5000
    assert "NVIDIA H200" in shown.caption and "torch 2.11.0+cu130, CUDA 13.0" in shown.caption
    assert shown.figure.axes[0].lines  # measured points and lclib's line
    page = (ROOT / "book" / f"{chapter}.md").read_text()
    calls = (f'page.measurements("{experiment}")', f'measurements.show("{experiment}")')
    assert any(c in page for c in calls), f"{chapter} does not call the view"


def test_fitted_fractions_are_the_fixtures():
    fit = measurements.show("crossover", directory=FIXTURE).fit
    assert fit["mfu_linear"] == pytest.approx(0.6) and fit["mfu_attention"] == pytest.approx(0.4)
    decode = measurements.show("decode", directory=FIXTURE)
    # the 4K point sits in L2 (5x faster than HBM) and must not pull the fit
    assert decode.fit["fraction"] == pytest.approx(0.8) and decode.fit["overhead_s"] >= 0
    assert "80% of 4.80 TB/s" in decode.caption
    assert measurements.show("fp8_decode", directory=FIXTURE).fit["fraction"] == pytest.approx(0.75)


def test_no_data_is_one_sentence(tmp_path):
    said = measurements.show("decode", directory=tmp_path)
    assert isinstance(said, measurements.Sentence)
    assert str(said).count(". ") == 0 and "device-run" in str(said)
    (tmp_path / "decode-cuda-bf16-x.jsonl").write_text(
        json.dumps({"kind": "header", "experiment": "decode"}) + "\n"
        + json.dumps({"kind": "row", "seq_len": 4096, "error": "out of memory"}) + "\n")
    assert isinstance(measurements.show("decode", directory=tmp_path), measurements.Sentence)
    with pytest.raises(ValueError, match="crossover"):
        measurements.show("nope", directory=tmp_path)


def test_load_gives_rows_with_provenance_and_skips_other_experiments():
    rows = measurements.load("decode", FIXTURE)
    assert len(rows) == 4 and all(r["provenance"]["device_name"] == "NVIDIA H200" for r in rows)
    assert {r["file"] for r in rows} == {"decode-cuda-bf16-20261202T020000000000Z.jsonl"}
    assert measurements.load("ring", FIXTURE)[0]["summary"]["world_size"] == 8
    crossover = measurements.load("crossover", FIXTURE)
    assert [r.get("error", "") for r in crossover].count("out of memory: (fixture)") == 1


def test_an_old_single_json_record_still_loads(tmp_path):
    record = {"experiment": "ring", "provenance": {"device": "cuda:0"}, "world_size": 8,
              "rows": [{"seq_len": 1024, "t_sdpa": 1.0}]}
    (tmp_path / "ring-cuda.json").write_text(json.dumps(record))
    [row] = measurements.load("ring", tmp_path)
    assert row["t_sdpa"] == 1.0 and row["summary"] == {"world_size": 8}


def test_fit_bandwidth_never_reports_a_negative_overhead():
    # small sizes faster per byte (a cache): a free line would cross zero below the data
    sizes = [1e6, 2e6, 4e6, 8e6]
    seconds = [0.2e-3, 0.5e-3, 1.6e-3, 3.8e-3]
    bandwidth, overhead = measurements.fit_bandwidth(sizes, seconds)
    assert overhead == 0.0
    through_origin = sum(x * y for x, y in zip(sizes, seconds, strict=True)) / sum(
        x * x for x in sizes)
    assert bandwidth == pytest.approx(1 / through_origin)


def test_measurements_import_without_torch():
    code = "import sys, lclib.measurements; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)

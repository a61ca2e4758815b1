"""The deployment diagram (chapter 8): per-GPU bytes equal lclib's memory functions, one box per
CP rank of the recipe's TP degree, the links' bandwidths, a frame for every control value."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import GB, VLLM_RESERVE, get_gpu, kv_budget, kv_cache_bytes, weight_bytes
from lclib.picture import MAX_HTML_BYTES
from lclib.pictures.case_study import (
    CASE_CONTEXTS,
    CASE_GPUS,
    CASE_MODEL,
    CONCURRENCY,
    GPU_COUNTS,
    case_study_frame,
    case_study_picture,
    deployment,
)
from lclib.recipe import recommend, users_that_fit

BOOK = Path(__file__).resolve().parents[1] / "book"

KNOBS = {"seq_len": st.sampled_from(CASE_CONTEXTS), "gpu": st.sampled_from(CASE_GPUS),
         "n_gpus": st.sampled_from(GPU_COUNTS), "concurrency": st.sampled_from(CONCURRENCY)}


def shown_bytes(svg: str) -> list[float]:
    """weights, KV, reserve, free per GPU, as the panel's data-bytes carry them."""
    return [float(b) for b in re.findall(r'data-bytes="(-?\d+)"', svg)]


@settings(max_examples=30, deadline=None)
@given(**KNOBS)
def test_each_gpu_holds_what_lclib_says(seq_len: int, gpu: str, n_gpus: int,
                                        concurrency: int) -> None:
    r = recommend(CASE_MODEL, gpu, n_gpus, seq_len, concurrency, 20.0, reserve=VLLM_RESERVE)
    svg = case_study_frame(seq_len, gpu, n_gpus, concurrency).svg
    weights, kv, reserve, free = shown_bytes(svg)
    # Llama-3.3-70B's 8 KV heads split over TP <= 8, the tokens over CP: every GPU a 1/(tp*cp)
    assert weights == pytest.approx(weight_bytes(CASE_MODEL, r.weight_dtype) / r.tp, abs=1)
    request = kv_cache_bytes(CASE_MODEL, seq_len, kv_dtype=r.kv_dtype)
    assert kv == pytest.approx(concurrency * request / (r.tp * r.cp), abs=1)
    # weights + reserve on each GPU leave exactly kv_budget's share for KV
    budget = kv_budget(CASE_MODEL, gpu, r.tp, r.weight_dtype, VLLM_RESERVE) / r.tp
    assert get_gpu(gpu).hbm_bytes - weights - reserve == pytest.approx(budget, abs=2)
    assert free == pytest.approx(budget - kv, abs=2)
    assert (free >= 0) == r.fits  # free < 0 exactly when fewer than `concurrency` fit
    assert ("does not fit" in svg) == (not r.fits)
    assert f"{weights / GB:,.1f} GB" in svg and f"{kv / GB:,.1f} GB" in svg
    assert "GiB" in svg  # both units, each exact


@settings(max_examples=30, deadline=None)
@given(**KNOBS)
def test_groups_nodes_and_links_follow_the_recipe(seq_len: int, gpu: str, n_gpus: int,
                                                  concurrency: int) -> None:
    r = deployment(seq_len, gpu, n_gpus, concurrency)
    svg = case_study_frame(seq_len, gpu, n_gpus, concurrency).svg
    groups = re.findall(r'class="lc-cs-group" data-tp="(\d+)" data-cp-rank="(\d+)"', svg)
    assert [int(t) for t, _ in groups] == [r.tp] * r.cp
    assert [int(k) for _, k in groups] == list(range(r.cp))
    assert r.tp * r.cp == n_gpus  # the layout uses every GPU asked for
    assert r.tp == min(n_gpus, 8)  # ch08: TP fills a node first, CP adds nodes
    nodes = -(-n_gpus // 8)  # an HGX/DGX node has 8 GPUs on NVLink
    assert len(re.findall(r'data-node="\d+"', svg)) == nodes
    assert svg.count('href="#lc-cs-gpu"') == min(n_gpus, 8)  # one node's GPUs, drawn once
    nvlink = get_gpu(gpu).nvlink_bandwidth / 2  # datasheet total over both directions
    assert f"NVLink {nvlink / GB:,.0f} GB/s per GPU each way" in svg
    # InfiniBand NDR: 400 Gb/s per port, one port per GPU (DGX H100 user guide) = 50 GB/s
    assert ("InfiniBand 50 GB/s per GPU" in svg) == (nodes > 1)


def frame_at(picture, index: list[int]) -> int:
    d, i = picture.data(), 0
    for a, k in zip(d["axes"], index, strict=True):
        i = i * a["n"] + k
    return d["frame"][i]


def test_every_control_changes_the_picture_and_it_fits() -> None:
    pic = case_study_picture()
    axes = pic.data()["axes"]
    init = [a["init"] for a in axes]
    for k, a in enumerate(axes):
        frames = {frame_at(pic, init[:k] + [v] + init[k + 1:]) for v in range(a["n"])}
        assert len(frames) == a["n"], f"control {pic.controls[k].name} leaves frames equal"
    assert len(pic.to_html().encode()) <= MAX_HTML_BYTES
    # the default is chapter 8's contract product: 128,000 tokens, 8 users, one 8-GPU node
    start = {c.name: c.values[c.init] for c in pic.controls}
    assert start == {"seq_len": 128_000, "gpu": "h100-sxm", "n_gpus": 8, "concurrency": 8}
    # ... and its numbers are the page's: users_vllm is users_that_fit with vLLM's reserve
    first = case_study_frame(**start).svg
    assert f"{users_that_fit(CASE_MODEL, 'h100-sxm', 128_000, 8, reserve=VLLM_RESERVE)} requests " \
           "fit, 8 needed" in first
    assert "case_study_picture()" in (BOOK / "ch08-case-study.md").read_text()


def test_a_contract_that_outgrows_the_gpus_is_drawn_full() -> None:
    # 32 requests of 1M tokens overflow 16 H100s at every precision the recipe tries
    r = deployment(1_000_000, "h100-sxm", 16, 32)
    svg = case_study_frame(1_000_000, "h100-sxm", 16, 32).svg
    assert not r.fits and "FULL" in svg and shown_bytes(svg)[3] < 0
    assert "FULL" not in case_study_frame(128_000, "h100-sxm", 8, 8).svg

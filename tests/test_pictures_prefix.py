"""Chapter 4's pictures: the radix tree drawn is the cache's own state after each request, and
the Gantt's bars and ticks are the scheduler's step log (or the engine's timestamps)."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import prefix, scheduler
from lclib.engine import Result
from lclib.picture import MAX_HTML_BYTES
from lclib.pictures import prefix as P
from lclib.units import fmt_seconds

BOOK = Path(__file__).resolve().parents[1] / "book"
PROMPTS = prefix.doc_qa_prompts(**P.WORKLOAD)
BAR = re.compile(r"(doc [A-Z]|#\d+) · (\d+) · (hit|new|cached|evicted)")


def drawn(svg: str) -> dict[str, int]:
    """Tokens the tree's bars say they hold, by state (each bar's label is text or a tooltip)."""
    out = dict.fromkeys(("hit", "new", "cached", "evicted"), 0)
    for _, tokens, state in BAR.findall(svg):
        out[state] += int(tokens)
    return out


def key(node, parent: dict) -> tuple:
    """A node's blocks from the root: the same block in two caches has the same key."""
    blocks = []
    while node in parent:
        blocks.append(node.block)
        node = parent[node]
    return tuple(reversed(blocks))


def frames_of(pic, block: int) -> list:
    k = list(pic.controls[0].values).index(block)
    return pic.frames[k * pic.steps:(k + 1) * pic.steps]


@pytest.fixture(scope="module")
def tree():
    return P.prefix_picture()


@pytest.mark.parametrize("block", [16, 1])
def test_tree_drawn_is_the_caches_state_after_each_request(tree, block: int) -> None:
    history, parent, _ = P.replay_history(PROMPTS, block, P.CAPACITY)
    frames = frames_of(tree, block)
    evicted_before = 0
    for state, frame, (hit, cache) in zip(
            history, frames, prefix.replay_steps(PROMPTS, block, P.CAPACITY), strict=True):
        live = {n: n.parent for n in cache.nodes()}
        kept = {key(n, parent) for n, s in state.status.items() if s != "evicted"}
        assert kept == {key(n, live) for n in live}  # the same blocks, in the same tree
        tokens = drawn(frame.svg)
        assert tokens["hit"] + tokens["new"] + tokens["cached"] == cache.size_tokens
        assert tokens["hit"] == hit == state.hit and tokens["new"] == state.inserted
        assert tokens["evicted"] == state.evicted == cache.stats.evicted_tokens - evicted_before
        evicted_before = cache.stats.evicted_tokens
        assert f"{hit} tokens hit" in frame.caption


@pytest.mark.parametrize("block", [16, 1])
def test_final_hit_rate_and_evictions_are_replays(tree, block: int) -> None:
    result = prefix.replay(PROMPTS, block, P.CAPACITY)
    history, _, _ = P.replay_history(PROMPTS, block, P.CAPACITY)
    assert history[-1].stats.hit_rate == result.hit_rate
    assert f"running hit rate {result.hit_rate:.1%}" in frames_of(tree, block)[-1].caption
    assert sum(h.evicted for h in history) == result.evicted_tokens > 0  # the LRU is at work
    dashed = [f.svg.count('stroke-dasharray="4 3"') - 1 for f in frames_of(tree, block)]  # legend
    assert [d > 0 for d in dashed] == [h.evicted > 0 for h in history]  # dashed: blocks left


def test_slider_ends_and_every_control_change_the_tree(tree) -> None:
    for block in (16, 1):
        frames = frames_of(tree, block)
        assert len({f.svg for f in frames}) == len(frames)  # every request changes the drawing
        first = drawn(frames[0].svg)
        assert first["hit"] == first["cached"] == first["evicted"] == 0 < first["new"]
        assert "Request 1/16" in frames[0].caption and "Request 16/16" in frames[-1].caption
    assert all(a.svg != b.svg for a, b in zip(frames_of(tree, 16), frames_of(tree, 1),
                                              strict=True))
    assert len(tree.to_html().encode()) <= MAX_HTML_BYTES


def test_block_16_hits_whole_blocks_and_block_1_every_shared_token(tree) -> None:
    for block in (16, 1):
        history, _, _ = P.replay_history(PROMPTS, block, 10**6)  # nothing evicted
        for i, state in enumerate(history):
            shared = max((len(_common(PROMPTS[i], q)) for q in PROMPTS[:i]), default=0)
            assert state.hit == shared // block * block


def _common(a, b) -> list:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return out


# --- the Gantt -------------------------------------------------------------------------------

COST = scheduler.StepCost()
WORKLOADS = st.lists(st.tuples(st.floats(0, 2), st.integers(1, 20_000), st.integers(1, 40)),
                     min_size=2, max_size=6)


@settings(max_examples=30, deadline=None)
@given(WORKLOADS, st.sampled_from([256, 2048, 8192, None]))
def test_gantt_lanes_are_the_step_log(reqs, chunk) -> None:
    requests = [scheduler.Request(*r) for r in reqs]
    log: list = []
    served = scheduler.simulate(requests, COST, chunk, log=log)
    lanes = P.simulated_lanes(served, log)
    for s, lane in zip(served, lanes, strict=True):
        assert lane.tokens == (s.first_token, *s.token_times)
        assert sum(n for _, _, n in lane.prefill) == s.request.prompt
        assert lane.prefill[-1][1] == s.first_token
    assert sum(len(lane.prefill) for lane in lanes) == sum(len(st.prefill) for st in log)


def test_gantt_draws_a_bar_per_chunk_and_a_tick_per_token() -> None:
    pic = P.scheduler_picture()
    for chunk, frame in zip(P.CHUNKS, pic.frames, strict=True):
        runs = [P.simulated(P.GANTT, COST, c) for c in (chunk, None)]
        bars = sum(len(lane.prefill) for _, lanes, _ in runs for lane in lanes)
        assert frame.svg.count('class="lc-fill-1"') == bars + 1  # + the legend's
        ticks = sum(len(lane.tokens) for _, lanes, _ in runs for lane in lanes)
        assert sum(p.count("v16") for p in re.findall(r'd="([^"]+)"', frame.svg)) == ticks
        served, _, _ = runs[0]
        whole, _, _ = runs[1]
        gaps = [max(s.itl) for s in served if s.request.prompt < 32_768]
        assert f"longest gap between tokens {fmt_seconds(max(gaps))}" in frame.caption
        assert f"(unchunked {fmt_seconds(max(max(s.itl) for s in whole[:-1]))})" in frame.caption
    assert len({f.svg for f in pic.frames}) == len(P.CHUNKS)  # the dropdown changes the drawing
    assert len(pic.to_html().encode()) <= MAX_HTML_BYTES


def test_unchunked_prefill_stalls_the_decodes_for_the_whole_prompt() -> None:
    served, lanes, _ = P.simulated(P.GANTT, COST, None)
    [(start, end, _)] = lanes[-1].prefill  # the long prompt, whole, in one step
    assert P.longest_gap(lanes)[:2] == (start, end) and end == served[-1].first_token
    _, chunked, _ = P.simulated(P.GANTT, COST, 512)
    a, b, _ = P.longest_gap(chunked)
    assert b - a < (end - start) / 10


def fake_results(served, log) -> list[Result]:
    """What `engine.generate` would return had the engine run the simulation's steps (a
    request enters the engine between steps: just before the step that starts its prompt)."""
    ends = tuple(st.end for st in log)
    out = []
    for i, s in enumerate(served):
        times = (s.first_token, *s.token_times)
        arrival = min(st.start for st in log if i in [j for j, _, _ in st.prefill])
        steps = tuple(t for t in ends if arrival < t <= times[-1])
        out.append(Result([0] * len(times), times[0] - arrival, s.itl, 0, s.request.prompt,
                          arrival, times, steps))
    return out


def test_engine_gantt_reads_the_engines_timestamps_like_the_step_log() -> None:
    runs = {}
    for budget in (256, 2048):
        log: list = []
        reqs = [scheduler.Request(0.0, 16, 48) for _ in range(4)]
        served = scheduler.simulate([*reqs, scheduler.Request(0.3, 3000, 1)], COST, budget,
                                    log=log)
        measured = P.measured_lanes(fake_results(served, log))
        for m, s in zip(measured, P.simulated_lanes(served, log), strict=True):
            assert m.tokens == s.tokens and m.long == s.long
            assert [b for _, b, _ in m.prefill] == [b for _, b, _ in s.prefill]
        runs[budget] = {"results": fake_results(served, log), "served": served, "steps": log}
    pic = P.engine_scheduler_picture(runs)
    assert len({f.svg for f in pic.frames}) == 2 and len(pic.to_html()) <= MAX_HTML_BYTES
    assert "vLLM, measured" in pic.frames[0].svg
    with pytest.raises(ValueError, match="chunked_prefill"):
        P.engine_scheduler_picture({})


def test_bad_input_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="at least one prompt"):
        P.prefix_picture([])
    with pytest.raises(ValueError, match="block_size"):
        P.prefix_picture(PROMPTS[:2], block_sizes={0: "none"})


def test_chapter_4_draws_what_it_glues() -> None:
    # the page glues replay's hit rates and gantt_summary's numbers for these very inputs
    page = (BOOK / "ch04-prefix-and-chunking.md").read_text()
    for call in ("prefix.doc_qa_prompts(**prefix_pictures.WORKLOAD)",
                 "prefix.replay(small, b, prefix_pictures.CAPACITY)",
                 "prefix_pictures.prefix_picture(small)",
                 "prefix_pictures.scheduler_picture(prefix_pictures.GANTT, cost4)",
                 "prefix_pictures.engine_scheduler_picture(chunked_runs)",
                 "cost4 = scheduler.StepCost()"):
        assert call in page, call
    assert scheduler.StepCost() == COST  # the picture's default cost is the page's cost4

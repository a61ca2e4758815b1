"""Chapter 4's pictures: the radix tree of a replayed workload, and the scheduler's Gantt.

`prefix_picture()` replays questions about documents through `lclib.prefix.RadixCache` and draws
the cache's own nodes after every request: runs of blocks as bars (x = token position), the
request's hit, the blocks it inserted, the blocks LRU evicted to make room. `scheduler_picture()`
draws `lclib.scheduler.simulate`'s step log as a Gantt (one row per request: prefill chunks as
bars, output tokens as ticks), chunked beside unchunked; `engine_scheduler_picture()` draws a vLLM
run (`lclib.engine.chunked_prefill`) beside the simulation of it, on the same time axis. Both
topics are chapter 4's ("prefix"), so they share this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .. import prefix, scheduler
from ..explorer import Dropdown
from ..picture import Frame, Picture
from ..svg import el, svg
from ..units import fmt_seconds

# --- the radix tree, replayed ----------------------------------------------------------------

# A small doc-QA workload like the chapter's (40 documents, 300 questions), sized to be drawn:
# 16 questions about up to 5 documents, in a cache of 640 tokens (about four documents).
WORKLOAD = {"n_docs": 5, "n_queries": 16, "doc_tokens": 160, "question_tokens": 24,
            "zipf_s": 1.0, "seed": 3}
CAPACITY = 640
BLOCKS = {16: "16: vLLM's hashed blocks", 1: "1: SGLang's token radix tree"}
STATUS = {"hit": "lc-fill-2", "new": "lc-fill-1", "cached": "lc-fill-0", "evicted": "lc-fill-warn",
          "tail": "lc-fill-5"}
WIDTH, TREE_X, TREE_W, ROW = 860, 8, 560, 17


@dataclass
class Replayed:
    """One request of a replay: the cache's nodes after it, with their state."""

    request: int
    prompt: int  # tokens
    doc: str
    hit: int  # tokens served from the cache
    status: dict = field(repr=False)  # node -> "hit" | "new" | "cached" | "evicted"
    inserted: int  # tokens
    evicted: int  # tokens
    stats: prefix.CacheStats
    size_tokens: int


def _docs(prompts: Sequence[Sequence[int]]) -> list[str]:
    """Each prompt's document, lettered in order of first appearance (by its first token)."""
    first = list(dict.fromkeys(p[0] for p in prompts))
    return [chr(ord("A") + first.index(p[0])) for p in prompts]


def _path(cache: prefix.RadixCache, prompt: Sequence[int], tokens: int) -> list:
    node, out, b = cache.root, [], cache.block_size
    for j in range(tokens // b):
        node = node.children[tuple(prompt[j * b:(j + 1) * b])]
        out.append(node)
    return out


def replay_history(prompts: Sequence[Sequence[int]], block_size: int,
                   capacity_tokens: int) -> tuple[list[Replayed], dict, dict]:
    """`prefix.replay_steps`, one `Replayed` per request; also every node's parent and the
    request that inserted it (kept after eviction, to draw where evicted blocks were)."""
    parent, born, before, out = {}, {}, set(), []
    docs = _docs(prompts)
    for i, (hit, cache) in enumerate(prefix.replay_steps(prompts, block_size, capacity_tokens)):
        nodes = cache.nodes()
        for n in nodes:
            parent.setdefault(n, n.parent)
            born.setdefault(n, i)
        now = set(nodes)
        status = dict.fromkeys(before - now, "evicted") | dict.fromkeys(now - before, "new")
        status |= {n: "cached" for n in now & before}
        status |= dict.fromkeys(_path(cache, prompts[i], hit), "hit")
        b = block_size
        out.append(Replayed(i, len(prompts[i]), docs[i], hit, status, len(now - before) * b,
                            len(before - now) * b, cache.stats, cache.size_tokens))
        before = now
    return out, parent, born


@dataclass
class _Seg:
    nodes: list
    start: int  # tokens before it
    rows: tuple[int, int] = (0, 0)
    leaf: bool = False


def _segments(state: Replayed, parent: dict, born: dict, block: int) -> list[_Seg]:
    """Runs of drawn nodes with one child and one status, laid out as an icicle: each leaf a
    row (in order of insertion), each run spanning its leaves' rows."""
    kids: dict = {}
    for n in sorted(state.status, key=lambda n: born[n]):
        kids.setdefault(parent[n], []).append(n)
    segs: list[_Seg] = []

    def grow(first, start: int, row: int) -> int:
        seg, node = _Seg([first], start), first
        while len(kids.get(node, ())) == 1:
            child = kids[node][0]
            if state.status[child] != state.status[first]:
                break
            seg.nodes.append(child)
            node = child
        segs.append(seg)
        end = row
        for child in kids.get(node, ()):
            end = grow(child, start + len(seg.nodes) * block, end)
        seg.rows, seg.leaf = (row, max(end, row + 1)), node not in kids
        return seg.rows[1]

    row = 0
    for top in [n for p, ns in kids.items() if p not in parent for n in ns]:
        row = grow(top, 0, row)
    return segs


def _bar(x: float, y: float, w: float, h: float, kind: str, text: str = "",
         outside: bool = False) -> str:
    """A bar of `kind` (a STATUS key); `text` inside if it fits, else after it (`outside`) or
    as a tooltip."""
    rect = el("rect", x=x, y=y, width=max(w, 1.0), height=h, rx=2, class_=STATUS[kind],
              fill_opacity=0.2 if kind in ("evicted", "tail") else 0.4, stroke="currentColor",
              stroke_opacity=0.6, stroke_dasharray="4 3" if kind == "evicted" else None)
    if not text:
        return rect
    fits = len(text) * 6.4 + 8 < w
    if fits or outside:
        return rect + el("text", text=text, x=x + 4 if fits else x + w + 4, y=y + h / 2 + 4)
    return el("g", el("title", text=text), rect)


def _legend(items: Sequence[tuple[str, str]], y: float) -> str:
    x, out = TREE_X, []
    for kind, text in items:
        out.append(_bar(x, y, 14, 12, kind) + el("text", text=text, x=x + 19, y=y + 10))
        x += 19 + len(text) * 6.6 + 16
    return "".join(out)


TREE_LEGEND = (("hit", "hit: reused by this request"), ("new", "new: inserted now"),
               ("cached", "cached"), ("evicted", "evicted now (LRU)"))


def _request_bar(state: Replayed, scale: float) -> str:
    """The request's prompt on the tree's token axis: hit, inserted, and a tail not cached."""
    done = state.hit + state.inserted
    out = [el("text", text=f"request #{state.request + 1}: doc {state.doc} + a question, "
                           f"{state.prompt} tokens = {state.hit} hit + {state.inserted} "
                           f"computed and cached + {state.prompt - done} computed, not cached",
              x=TREE_X, y=38)]
    for a, b, kind, text in ((0, state.hit, "hit", f"hit {state.hit}"),
                             (state.hit, done, "new", f"new {state.inserted}"),
                             (done, state.prompt, "tail", f"not cached {state.prompt - done}")):
        if b > a:
            out.append(_bar(TREE_X + a * scale, 44, (b - a) * scale, 16, kind, text,
                            b == state.prompt))
    return "".join(out)


def _tree_frame(state: Replayed, parent: dict, born: dict, block: int, capacity: int,
                scale: float, rows: int, n: int, letters: Mapping[int, str]) -> Frame:
    top = 84
    parts = [_legend(TREE_LEGEND, 4), _request_bar(state, scale),
             el("text", text="the cache's tree (one bar: a run of blocks; label: document "
                             "or #request that inserted it · tokens · state)", x=TREE_X,
                y=top - 6)]
    segs = _segments(state, parent, born, block)
    for seg in segs:
        first, tokens = seg.nodes[0], len(seg.nodes) * block
        who = f"doc {letters[first.block[0]]}" if seg.start == 0 else f"#{born[first] + 1}"
        r0, r1 = seg.rows
        parts.append(_bar(TREE_X + seg.start * scale, top + r0 * ROW, tokens * scale,
                          (r1 - r0) * ROW - 3, state.status[first],
                          f"{who} · {tokens} · {state.status[first]}", seg.leaf))
    s = state.stats
    caption = (f"Request {state.request + 1}/{n} (doc {state.doc}, {state.prompt} tokens): "
               f"{state.hit} tokens hit, {state.inserted} inserted, {state.evicted} evicted "
               f"(LRU); cache {state.size_tokens}/{capacity} tokens; running hit rate "
               f"{s.hit_rate:.1%} ({s.hit_tokens:,} of {s.query_tokens:,} prompt tokens).")
    label = (f"Radix cache, block size {block}, after request {state.request + 1}: "
             f"{len(segs)} runs of blocks")
    return Frame(svg(WIDTH, top + rows * ROW + 4, *parts, label=label), caption)


def prefix_picture(prompts: Sequence[Sequence[int]] | None = None,
                   capacity_tokens: int = CAPACITY,
                   block_sizes: Mapping[int, str] = BLOCKS) -> Picture:
    """The radix cache after each request of `prompts` (default: `doc_qa_prompts(**WORKLOAD)`),
    one dropdown entry per block size; the last frame's hit rate is `prefix.replay`'s."""
    prompts = prefix.doc_qa_prompts(**WORKLOAD) if prompts is None else prompts
    if not prompts:
        raise ValueError("pass at least one prompt (token id lists)")
    scale = TREE_W / max(len(p) for p in prompts)
    letters = dict(zip((p[0] for p in prompts), _docs(prompts), strict=True))
    runs = {}
    for b in block_sizes:
        history, parent, born = replay_history(prompts, b, capacity_tokens)
        rows = max(max(s.rows[1] for s in _segments(h, parent, born, b)) for h in history)
        runs[b] = history, parent, born, rows

    def draw(block: int, step: int) -> Frame:
        history, parent, born, rows = runs[block]
        return _tree_frame(history[step], parent, born, block, capacity_tokens, scale, rows,
                           len(prompts), letters)

    return Picture(draw, [Dropdown("block", "block size", tuple(block_sizes),
                                   fmt=block_sizes.get)],
                   steps=len(prompts), title="A prefix cache, request by request",
                   step_label="request", interval_ms=1500)


# --- the scheduler's Gantt -------------------------------------------------------------------

# Four short requests decoding when a long prompt arrives (the chapter's mix, scaled to be
# drawn: 2K-token prompts and a 32K one, Llama-3.3-70B on 4 H100s at 40% MFU).
GANTT = tuple([scheduler.Request(0.1 * i, 2048, 128) for i in range(4)]
              + [scheduler.Request(1.0, 32_768, 16)])
CHUNKS = (512, 2048, 8192)
LABEL_W, GANTT_W, LANE = 150, 690, 22
GANTT_LEGEND = (("new", "prefill: a chunk of the prompt (tokens)"),
                ("tick", "one output token"), ("wait", "in the engine, no token"))


@dataclass(frozen=True)
class Lane:
    """One request's row of a Gantt: its prompt's pieces (start s, end s, tokens; 0 when the
    engine does not say) and the times of its output tokens."""

    label: str
    arrival: float
    prefill: tuple[tuple[float, float, int], ...]
    tokens: tuple[float, ...]
    long: bool = False  # the longest prompt's lane


def _lane_of(i: int, prompt: int, longest: int, *rest) -> Lane:
    name = "long" if prompt == longest else f"short {i + 1}"
    return Lane(f"{name} · {prompt:,} tok", *rest, long=prompt == longest)


def simulated_lanes(served: Sequence[scheduler.Served],
                    steps: Sequence[scheduler.Step]) -> list[Lane]:
    """Lanes from `scheduler.simulate`'s returned requests and its step log."""
    pieces: list[list] = [[] for _ in served]
    ticks: list[list] = [[] for _ in served]
    for st in steps:
        for i, _, n in st.prefill:
            pieces[i].append((st.start, st.end, n))
        for i, _ in st.decode:
            ticks[i].append(st.end)
    longest = max(s.request.prompt for s in served)
    return [_lane_of(i, s.request.prompt, longest, s.request.arrival, tuple(pieces[i]),
                     (s.first_token, *ticks[i])) for i, s in enumerate(served)]


def measured_lanes(results: Sequence) -> list[Lane]:
    """Lanes from `engine.generate`'s `Result`s: the engine steps before a request's first
    token computed its prompt (vLLM does not report each step's tokens)."""
    longest, out = max(r.prompt_tokens for r in results), []
    for i, r in enumerate(results):
        ends = [t for t in r.steps if t <= r.times[0]]
        starts = [r.arrival, *ends[:-1]]
        out.append(_lane_of(i, r.prompt_tokens, longest, r.arrival,
                            tuple((a, b, 0) for a, b in zip(starts, ends, strict=True)),
                            tuple(r.times)))
    return out


def longest_gap(lanes: Sequence[Lane]) -> tuple[float, float, int]:
    """(start, end, lane index) of the longest gap between two output tokens of one of the
    short requests (the lanes that are not `long`)."""
    return max(((a, b, k) for k, lane in enumerate(lanes) if not lane.long
                for a, b in zip(lane.tokens, lane.tokens[1:], strict=False)),
               key=lambda g: g[1] - g[0])


def _nice(t_max: float) -> float:
    raw = t_max / 6
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _lane(lane: Lane, y: float, sx) -> str:
    end = lane.tokens[-1]
    out = [el("text", text=lane.label, x=4, y=y + 13),
           el("line", x1=sx(lane.arrival), x2=sx(end), y1=y + 9, y2=y + 9, class_="lc-faint",
              stroke_width=3)]
    for a, b, n in lane.prefill:
        tip = f"{lane.label}: prefill {b - a:.3f} s" + (f", {n:,} tokens" if n else "")
        text = f"{n:,}" if n and len(f"{n:,}") * 6.4 + 6 < sx(b) - sx(a) else ""
        out.append(el("g", el("title", text=tip), _bar(sx(a), y + 2, sx(b) - sx(a), 14, "new",
                                                       text)))
    ticks = "".join(f"M{sx(t):.1f} {y + 1}v16" for t in lane.tokens)
    out.append(el("path", d=ticks, class_="lc-ink", stroke_width=1))
    return "".join(out)


def _gantt(panels: Sequence[tuple[str, Sequence[Lane]]], t_max: float, label: str) -> str:
    """Panels of lanes on one time axis from 0 to `t_max` seconds; each panel's longest token
    gap marked."""
    def sx(t: float) -> float:
        return LABEL_W + t / t_max * GANTT_W

    out, y = [_gantt_legend()], 30
    for title, lanes in panels:
        out.append(el("text", text=title, x=4, y=y + 12, font_weight="bold"))
        a, b, k = longest_gap(lanes)
        x, w = sx(a), sx(b) - sx(a)
        out.append(el("path", d=f"M{x:.1f} {y + 28}v6M{x:.1f} {y + 31}h{w:.1f}m0 -3v6",
                      class_="lc-ink", stroke_width=1.5))
        text = f"longest gap between tokens: {fmt_seconds(b - a)} ({lanes[k].label})"
        out.append(el("text", text=text, x=min(x, sx(t_max) - 300), y=y + 26, font_size=11))
        y += 38
        for lane in lanes:
            out.append(_lane(lane, y, sx))
            y += LANE
        y += 8
    step = _nice(t_max)
    ticks = [k * step for k in range(int(t_max / step) + 1)]
    out += [el("line", x1=sx(t), x2=sx(t), y1=30, y2=y, class_="lc-faint") for t in ticks]
    out += [el("text", text=f"{t:g} s", x=sx(t), y=y + 12, text_anchor="middle") for t in ticks]
    return svg(LABEL_W + GANTT_W + 30, y + 18, *out, label=label)


def _gantt_legend() -> str:
    x, out = 4, []
    for kind, text in GANTT_LEGEND:
        if kind == "tick":
            out.append(el("path", d=f"M{x + 7} 6v14", class_="lc-ink", stroke_width=1.5))
        elif kind == "wait":
            out.append(el("line", x1=x, x2=x + 14, y1=13, y2=13, class_="lc-faint",
                          stroke_width=3))
        else:
            out.append(_bar(x, 7, 14, 12, kind))
        out.append(el("text", text=text, x=x + 19, y=17))
        x += 19 + len(text) * 6.6 + 18
    return "".join(out)



def simulated(requests: Sequence[scheduler.Request], cost: scheduler.StepCost,
              chunk: int | None) -> tuple[list[scheduler.Served], list[Lane], int]:
    """`scheduler.simulate` with its step log: (served, their lanes, how many steps)."""
    log: list[scheduler.Step] = []
    served = scheduler.simulate(requests, cost, chunk, log=log)
    return served, simulated_lanes(served, log), len(log)


def scheduler_picture(requests: Sequence[scheduler.Request] = GANTT,
                      cost: scheduler.StepCost | None = None,
                      chunks: Sequence[int] = CHUNKS) -> Picture:
    """A Gantt of `scheduler.simulate`'s steps with each of `chunks` (a dropdown) above the same
    requests unchunked, on one time axis."""
    cost = cost or scheduler.StepCost()
    runs = {c: simulated(requests, cost, c) for c in (*chunks, None)}
    t_max = max(lane.tokens[-1] for _, lanes, _ in runs.values() for lane in lanes)
    _, whole, whole_steps = runs[None]

    def draw(chunk: int) -> Frame:
        _, lanes, n_steps = runs[chunk]
        pic = _gantt([(f"chunked: max_num_batched_tokens = {chunk:,} ({n_steps} steps)", lanes),
                      (f"unchunked: each prompt whole in one step ({whole_steps} steps)",
                       whole)], t_max, f"Gantt of engine steps, chunk {chunk:,} vs unchunked")
        caption = (f"Chunk {chunk:,}: the short requests' longest gap between tokens "
                   f"{_gap(lanes)} (unchunked {_gap(whole)}); the long prompt's first token "
                   f"{_ttft(lanes)} after it arrived (unchunked {_ttft(whole)}).")
        return Frame(pic, caption)

    return Picture(draw, [Dropdown("chunk", "chunk (tokens per step)", tuple(chunks),
                                   fmt="{:,}".format, default=chunks[len(chunks) // 2])],
                   title="The scheduler's steps: a long prompt among decoding requests")


def gantt_summary(lanes: Sequence[Lane]) -> dict[str, float]:
    """What the captions say: the short requests' longest gap between tokens (s), the long
    prompt's time to first token (s) and the steps its prompt took."""
    a, b, _ = longest_gap(lanes)
    long = next(lane for lane in lanes if lane.long)
    return {"longest_gap": b - a, "long_ttft": long.tokens[0] - long.arrival,
            "long_steps": len(long.prefill)}


def _gap(lanes: Sequence[Lane]) -> str:
    return fmt_seconds(gantt_summary(lanes)["longest_gap"])


def _ttft(lanes: Sequence[Lane]) -> str:
    return fmt_seconds(gantt_summary(lanes)["long_ttft"])


def engine_scheduler_picture(runs: Mapping[int, Mapping]) -> Picture:
    """vLLM's measured timeline beside `lclib.scheduler`'s simulation of it, on one time axis:
    `runs` maps `max_num_batched_tokens` to `engine.chunked_prefill`'s result (a dropdown)."""
    if not runs:
        raise ValueError("pass {max_num_batched_tokens: engine.chunked_prefill(...)}, one or more")
    lanes = {b: (measured_lanes(r["results"]), simulated_lanes(r["served"], r["steps"]))
             for b, r in runs.items()}
    t_max = max(lane.tokens[-1] for pair in lanes.values() for ls in pair for lane in ls)

    def draw(budget: int) -> Frame:
        vllm, model = lanes[budget]
        steps = [gantt_summary(ls)["long_steps"] for ls in (vllm, model)]
        pic = _gantt([(f"vLLM, measured ({steps[0]} steps to the long prompt's first token)",
                       vllm),
                      (f"lclib.scheduler with the engine's step cost ({steps[1]} steps)", model)],
                     t_max, f"vLLM and its model, max_num_batched_tokens {budget:,}")
        caption = (f"max_num_batched_tokens {budget:,}: the short requests' longest gap "
                   f"{_gap(vllm)} measured, {_gap(model)} simulated; the long prompt's first "
                   f"token {_ttft(vllm)} after it arrived ({_ttft(model)} simulated).")
        return Frame(pic, caption)

    return Picture(draw, [Dropdown("budget", "max_num_batched_tokens", tuple(runs),
                                   fmt="{:,}".format)],
                   title="vLLM's steps and the model's, on one clock")

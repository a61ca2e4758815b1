"""Chapter 8's picture: the recipe calculator's deployment drawn as nodes, GPUs and links.

`lclib.recipe.recommend` picks precisions and a TP x CP layout; the picture draws it: one row per
node (NVLink inside), each TP group boxed (one CP rank; the ring between them runs over
InfiniBand once it leaves a node), and what each GPU holds (`gpu_bytes`: weights and KV from
`lclib.context_parallel.per_gpu_memory`, the reserve from `lclib.Reserve`, the rest free).
"""

from __future__ import annotations

from ..context_parallel import kv_split, link_bandwidth, per_gpu_memory
from ..cost import VLLM_RESERVE, Reserve, kv_cache_bytes
from ..explorer import Dropdown, Slider
from ..explorers.prefix import LogValues
from ..hardware import get_gpu
from ..picture import Frame, Picture
from ..recipe import GPUS_PER_NODE, Recipe, recommend
from ..svg import el, svg
from ..units import GB, GiB, fmt_seconds

CASE_MODEL, CASE_BUDGET_S = "llama-3.3-70b", 20.0  # chapter 8's contract product and TTFT budget
# the explorer's documents, thinned to fit the size limit (each frame is a whole SVG)
CASE_CONTEXTS = (32_768, 128_000, 1_000_000)
CASE_GPUS = ("h100-sxm", "h200")
GPU_COUNTS = (4, 8, 16, 32)  # half a node to four nodes
CONCURRENCY = (1, 8, 32)  # chapter 8's contract: 8 users
W, SLOT, ROW, LEFT, TOP = 760, 54, 124, 16, 6  # SVG units: a GPU slot, a node row
BAR = 56  # height of a GPU's memory bar (its whole HBM)
PARTS = (("weights", "lc-fill-0"), ("kv", "lc-fill-1"), ("reserve", "lc-fill-5"))
# A <use> clone does not match the page's `.lc-picture .lc-fill-*` rules, so the GPU and node
# drawn once and reused take presentation attributes: picture.css's colours for the fills (the
# same in both themes) and currentColor for ink, which the clone inherits from the page's theme.
FILL_HEX = {"lc-fill-0": "#56B4E9", "lc-fill-1": "#E69F00", "lc-fill-5": "#999999"}
INK = {"fill": "none", "stroke": "currentColor"}
FAINT = {**INK, "stroke_opacity": 0.35}


def deployment(context: int, gpu: str, n_gpus: int, concurrency: int,
               reserve: Reserve = VLLM_RESERVE) -> Recipe:
    """The recipe chapter 8 prints for these knobs (its model, budget and vLLM's reserve)."""
    return recommend(CASE_MODEL, gpu, n_gpus, context, concurrency, CASE_BUDGET_S,
                     reserve=reserve)


def gpu_bytes(r: Recipe, context: int, gpu: str, concurrency: int,
              reserve: Reserve = VLLM_RESERVE) -> dict[str, float]:
    """Bytes on each GPU of recipe `r` (all alike): its weight shard, the KV shares of
    `concurrency` requests, the reserve, and what is left of the reported HBM (< 0: overflow)."""
    mem = per_gpu_memory(CASE_MODEL, context, r.tp, r.cp, r.weight_dtype, r.kv_dtype)
    out = {"weights": mem["weights"], "kv": concurrency * mem["kv"],
           "reserve": reserve.bytes_per_gpu(CASE_MODEL, gpu, r.tp),
           "hbm": float(get_gpu(gpu).hbm_bytes)}
    out["free"] = out["hbm"] - out["weights"] - out["kv"] - out["reserve"]
    return out


def _gb(n: float) -> str:
    return f"{n / GB:,.1f} GB = {n / GiB:,.1f} GiB"


def _gpu_symbol(b: dict[str, float]) -> str:
    """One GPU's box and memory bar (bottom up: weights, KV, reserve; over the top: overflow),
    defined once and drawn at every slot with <use>."""
    parts, y = [el("rect", x=0, y=0, width=SLOT - 8, height=BAR + 14, rx=3, **INK)], BAR
    for key, fill in PARTS:
        h = min(BAR * b[key] / b["hbm"], y - 2)
        y -= h
        parts.append(el("rect", x=4, y=round(y, 1), width=SLOT - 16, height=round(h, 1),
                        fill=FILL_HEX[fill]))
    if b["free"] < 0:
        parts.append(el("text", x=(SLOT - 8) // 2, y=BAR + 12, text_anchor="middle",
                        text="FULL", fill="#D55E00", font_size=11, font_weight="bold"))
    parts.append(el("rect", x=4, y=2, width=SLOT - 16, height=BAR - 2, **FAINT))
    return el("defs", el("g", *parts, id="lc-cs-gpu"))


def _nodes(r: Recipe, gpu: str) -> list[str]:
    """A row per node (one <use> of a node drawn once), a box per TP group (one CP rank), the
    links labelled with their bandwidths."""
    n = r.tp * r.cp
    nodes = -(-n // GPUS_PER_NODE)
    nv, ib = link_bandwidth("nvlink", gpu), link_bandwidth("infiniband", gpu)
    node = el("g", el("rect", x=LEFT, y=0, width=GPUS_PER_NODE * SLOT + 12, height=ROW - 14,
                      rx=6, **FAINT),
              *(el("use", href="#lc-cs-gpu", x=LEFT + 10 + i * SLOT, y=20)
                for i in range(min(n, GPUS_PER_NODE))),
              el("text", x=LEFT + 60, y=ROW - 18, fill="currentColor", font_size=12,
                 text=f"NVLink {nv / GB:,.0f} GB/s per GPU each way"), id="lc-cs-node")
    out = [el("defs", node)]
    for k in range(nodes):
        out += [el("use", href="#lc-cs-node", y=TOP + k * ROW, data_node=k),
                el("text", x=LEFT + 6, y=TOP + k * ROW + ROW - 18, text=f"node {k}")]
    for g in range(r.cp):
        row, col = divmod(g * r.tp, GPUS_PER_NODE)
        x, y = LEFT + 7 + col * SLOT, TOP + row * ROW + 3
        out += [el("rect", x=x, y=y, width=r.tp * SLOT, height=BAR + 30, rx=4,
                   class_="lc-cs-group", data_tp=r.tp, data_cp_rank=g),
                el("text", x=x + r.tp * SLOT - 4, y=y + 13, text_anchor="end",
                   text=f"TP group {g}" + (f" = CP rank {g}" if r.cp > 1 else ""))]
    if nodes > 1:
        x, y = LEFT + GPUS_PER_NODE * SLOT + 24, TOP + ROW // 2
        out += [el("path", d=f"M{x} {y - 20}V{y + (nodes - 1) * ROW - 28}", class_="lc-ink",
                   stroke_width=2, stroke_dasharray="6 3"),
                el("text", x=x + 6, y=y + 10, text=f"InfiniBand {ib / GB:,.0f} GB/s per GPU"),
                el("text", x=x + 6, y=y + 26, text="each way: the CP ring between nodes")]
    return out


def _panel(r: Recipe, b: dict[str, float], gpu: str, context: int, concurrency: int,
           y: int) -> list[str]:
    """What each GPU holds, in words and bytes (GB = 10^9 B, GiB = 2^30 B)."""
    g, ways = get_gpu(gpu), kv_split(CASE_MODEL, r.tp)
    request = kv_cache_bytes(CASE_MODEL, context, kv_dtype=r.kv_dtype)
    fit = (f"{r.users} requests fit, {concurrency} needed" if r.fits else
           f"does not fit: {r.users} requests fit, {concurrency} needed")
    rows = [
        (None, f"{r.tp * r.cp} × {g.label}: TP {r.tp} × CP {r.cp}, {r.weight_dtype} weights, "
               f"{r.kv_dtype} KV; {fit}"),
        ("lc-fill-0", f"weights: {_gb(b['weights'])} per GPU (1/{r.tp} of the model)"),
        ("lc-fill-1", f"KV: {_gb(b['kv'])} per GPU: {concurrency} × 1/{ways * r.cp} of a "
                      f"request's {request / GB:,.1f} GB (TP splits its heads {ways} ways, CP "
                      f"its tokens {r.cp})"),
        ("lc-fill-5", f"reserve: {_gb(b['reserve'])} (vLLM's defaults)"),
        (None, (f"free: {_gb(b['free'])}" if b["free"] >= 0 else
                f"over by {_gb(-b['free'])}: FULL") + f", of {_gb(b['hbm'])} reported HBM"),
        (None, f"first-query TTFT {fmt_seconds(r.ttft_s)} (budget "
               f"{fmt_seconds(CASE_BUDGET_S)}); each GPU's bar is its HBM, filled bottom up"),
    ]
    out = []
    for i, (fill, text) in enumerate(rows):
        ty = y + 18 * i
        if fill:
            out.append(el("rect", x=LEFT, y=ty - 10, width=10, height=10, class_=fill))
        key = ("weights", "kv", "reserve", "free")[i - 1] if 1 <= i <= 4 else None
        out.append(el("text", x=LEFT + (16 if fill else 0), y=ty, text=text,
                      data_bytes=None if key is None else f"{b[key]:.0f}"))
    return out


def case_study_frame(seq_len: int, gpu: str, n_gpus: int, concurrency: int) -> Frame:
    """The deployment `recommend` gives for these knobs, drawn."""
    r = deployment(seq_len, gpu, n_gpus, concurrency)
    b = gpu_bytes(r, seq_len, gpu, concurrency)
    nodes = -(-n_gpus // GPUS_PER_NODE)
    top = TOP + nodes * ROW + 6
    label = f"{n_gpus} {gpu}, TP {r.tp} × CP {r.cp}"
    caption = (f"{seq_len:,} tokens × {concurrency} request(s) on {n_gpus} {get_gpu(gpu).label}: "
               f"{r.cp} TP group(s) of {r.tp} GPUs; each GPU holds "
               f"{b['weights'] / GB:,.1f} GB of weights and {b['kv'] / GB:,.1f} GB of KV"
               + ("" if r.fits else " (does not fit)"))
    body = [_gpu_symbol(b), *_nodes(r, gpu), *_panel(r, b, gpu, seq_len, concurrency, top)]
    return Frame(svg(W, top + 6 * 18, *body, label=label), caption=caption)


def case_study_picture() -> Picture:
    """Chapter 8's deployment: context, GPU type and count, and concurrency redraw the layout."""
    controls = [LogValues("seq_len", "document (tokens)", CASE_CONTEXTS, fmt="{:,}".format,
                          default=128_000),
                Dropdown("gpu", "GPU", CASE_GPUS),
                Slider("n_gpus", "GPUs", GPU_COUNTS, fmt=str, default=8),
                Slider("concurrency", "concurrent requests", CONCURRENCY, fmt=str, default=8)]
    return Picture(case_study_frame, controls,
                   title=f"The deployment the recipe calculator picks for {CASE_MODEL}")


__all__ = ["case_study_frame", "case_study_picture", "deployment", "gpu_bytes"]

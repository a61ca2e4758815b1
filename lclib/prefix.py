"""Prefix caching: a block-granular tree of cached KV, and a workload simulator.

`RadixCache` stores token sequences in blocks of `block_size` tokens (one tree edge per block)
up to `capacity_tokens`. `match` finds the longest cached block-aligned prefix; `insert` caches
a sequence's full blocks, evicting least recently used leaves; `acquire`/`release` pin a prefix
while a request uses it, so it is never evicted.

Two engines, two granularities. vLLM's automatic prefix caching hashes each full block (16
tokens by default on GPUs), the hash chained on its parent's, so only full blocks hit: this
class with `block_size=16`. SGLang's RadixAttention (Zheng et al. 2023) is a radix tree with
variable-length edges over pages of one token by default, so a match is token-granular: this
class with `block_size=1` matches the same prefixes (one node per token, not compressed edges).

    cache = RadixCache(block_size=16, capacity_tokens=100_000)
    cache.match(prompt)            # tokens whose KV can be reused (a multiple of 16)
    lease = cache.acquire(prompt)  # pin them while the request runs
    cache.insert(prompt + answer)  # cache what this request computed
    cache.release(lease)
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .units import positive_int

Tokens = Sequence[int]


@dataclass(eq=False)
class _Node:
    block: tuple[int, ...]
    parent: _Node | None
    children: dict[tuple[int, ...], _Node] = field(default_factory=dict)
    refs: int = 0
    last_used: int = 0


@dataclass(frozen=True)
class Lease:
    """A pinned prefix: `tokens` cached tokens that stay until `RadixCache.release(lease)`."""

    tokens: int
    nodes: tuple[_Node, ...] = field(repr=False)
    id: int = 0


@dataclass(frozen=True)
class CacheStats:
    """Lookups so far: tokens asked for, tokens found cached, and what insert/evict moved."""

    lookups: int
    query_tokens: int
    hit_tokens: int
    inserted_tokens: int
    evicted_tokens: int

    @property
    def hit_rate(self) -> float:
        """Cached tokens over looked-up tokens (0 before any lookup)."""
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0


class RadixCache:
    """Cached KV of token sequences, shared by prefix, in blocks, within a token capacity."""

    def __init__(self, block_size: int, capacity_tokens: int) -> None:
        self.block_size = positive_int("block_size", block_size)
        capacity_tokens = positive_int("capacity_tokens", capacity_tokens)
        if capacity_tokens < self.block_size:
            raise ValueError(f"capacity_tokens ({capacity_tokens}) holds no block of "
                             f"{self.block_size}; pass capacity_tokens >= block_size")
        self.capacity_blocks = capacity_tokens // self.block_size
        self.root = _Node((), None)
        self.n_blocks = 0
        self._clock = itertools.count(1)
        self._leases = itertools.count(1)
        self._open: set[int] = set()
        self._heap: list[tuple[int, int, _Node]] = []  # (last_used, tiebreak, node), lazy
        self._ties = itertools.count()
        self._counts = dict.fromkeys(("lookups", "query", "hit", "inserted", "evicted"), 0)

    @property
    def capacity_tokens(self) -> int:
        return self.capacity_blocks * self.block_size

    @property
    def size_tokens(self) -> int:
        """Tokens cached now (always <= capacity_tokens)."""
        return self.n_blocks * self.block_size

    @property
    def stats(self) -> CacheStats:
        c = self._counts
        return CacheStats(c["lookups"], c["query"], c["hit"], c["inserted"], c["evicted"])

    def nodes(self) -> list[_Node]:
        """Every cached block's node (`.block`, `.parent`, `.children`), parents first."""
        out, todo = [], list(reversed(self.root.children.values()))
        while todo:
            node = todo.pop()
            out.append(node)
            todo.extend(reversed(node.children.values()))
        return out

    def _blocks(self, tokens: Tokens) -> list[tuple[int, ...]]:
        if isinstance(tokens, str | bytes) or not all(isinstance(t, int) for t in tokens):
            raise ValueError("tokens must be a sequence of int token ids, e.g. [17, 4, 99]")
        b = self.block_size
        return [tuple(tokens[i:i + b]) for i in range(0, len(tokens) - b + 1, b)]

    def _touch(self, node: _Node, now: int) -> None:
        node.last_used = now
        if not node.children:
            heapq.heappush(self._heap, (now, next(self._ties), node))

    def _walk(self, tokens: Tokens) -> tuple[list[_Node], list[tuple[int, ...]]]:
        """The cached nodes along `tokens`' blocks, and the blocks not cached after them."""
        blocks, node, path = self._blocks(tokens), self.root, []
        for block in blocks:
            child = node.children.get(block)
            if child is None:
                break
            path.append(child)
            node = child
        return path, blocks[len(path):]

    def _visit(self, tokens: Tokens) -> list[_Node]:
        path, _ = self._walk(tokens)
        now = next(self._clock)
        for node in path:
            self._touch(node, now)
        return path

    def match(self, tokens: Tokens) -> int:
        """Length of the longest cached block-aligned prefix of `tokens` (marks it recently used).

        Counts as one lookup in `stats`: `len(tokens)` asked for, the returned length found.
        """
        hit = len(self._visit(tokens)) * self.block_size
        for key, n in (("lookups", 1), ("query", len(tokens)), ("hit", hit)):
            self._counts[key] += n
        return hit

    def acquire(self, tokens: Tokens) -> Lease:
        """Pin the cached prefix of `tokens` (no lookup is counted); release it when done."""
        path = self._visit(tokens)
        for node in path:
            node.refs += 1
        lease = Lease(len(path) * self.block_size, tuple(path), next(self._leases))
        self._open.add(lease.id)
        return lease

    def release(self, lease: Lease) -> None:
        """Unpin a prefix pinned by `acquire`."""
        if not isinstance(lease, Lease) or lease.id not in self._open:
            raise ValueError("release takes a Lease from this cache's acquire(), once")
        self._open.remove(lease.id)
        for node in lease.nodes:
            node.refs -= 1
            if not node.refs and not node.children:  # evictable again (the heap may have
                heapq.heappush(self._heap, (node.last_used, next(self._ties), node))  # lost it)

    def insert(self, tokens: Tokens) -> int:
        """Cache the full blocks of `tokens`; return how many tokens were added.

        Evicts least recently used unpinned leaves to make room; stops early (caching a shorter
        prefix) when everything else is pinned.
        """
        lease = self.acquire(tokens)  # the path we extend must survive our own evictions
        node = lease.nodes[-1] if lease.nodes else self.root
        _, missing = self._walk(tokens)
        now, added = next(self._clock), []
        for block in missing:
            if self.n_blocks >= self.capacity_blocks and not self._evict_one():
                break
            child = _Node(block, node, refs=1)
            node.children[block] = child
            self.n_blocks += 1
            added.append(child)
            node = child
        for child in added:
            child.refs -= 1
            self._touch(child, now)
        self.release(lease)
        self._counts["inserted"] += len(added) * self.block_size
        return len(added) * self.block_size

    def _evict_one(self) -> bool:
        """Drop the least recently used unpinned leaf; False if there is none."""
        while self._heap:
            used, _, node = heapq.heappop(self._heap)
            parent = node.parent
            stale = (used != node.last_used or node.children or node.refs or parent is None
                     or parent.children.get(node.block) is not node)
            if stale:
                continue
            del parent.children[node.block]
            node.parent = None
            self.n_blocks -= 1
            self._counts["evicted"] += self.block_size
            if parent is not self.root and not parent.children:
                heapq.heappush(self._heap, (parent.last_used, next(self._ties), parent))
            return True
        return False


# --- workloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayResult:
    """What a cache saved on a sequence of prompts."""

    prompt_tokens: int
    saved_tokens: int  # prefill tokens served from the cache
    evicted_tokens: int

    @property
    def hit_rate(self) -> float:
        return self.saved_tokens / self.prompt_tokens


def zipf_choices(n_items: int, n_draws: int, s: float, rng: random.Random) -> list[int]:
    """`n_draws` item indices, item i drawn with probability proportional to 1 / (i + 1)^s."""
    n_items, n_draws = positive_int("n_items", n_items), positive_int("n_draws", n_draws)
    if not s >= 0:
        raise ValueError(f"the Zipf exponent s must be >= 0 (0 = uniform), got {s!r}")
    return rng.choices(range(n_items), weights=[(i + 1) ** -s for i in range(n_items)], k=n_draws)


def _random_tokens(n: int, rng: random.Random) -> list[int]:
    return [rng.randrange(1 << 30) for _ in range(n)]


def doc_qa_prompts(n_docs: int, n_queries: int, doc_tokens: int, question_tokens: int,
                   zipf_s: float = 1.0, seed: int = 0) -> list[list[int]]:
    """Questions about documents: each prompt is a Zipf-popular document plus a new question.

    Document lengths vary uniformly around `doc_tokens` (from half to 1.5 times it).
    """
    rng = random.Random(seed)
    doc_tokens = positive_int("doc_tokens", doc_tokens)
    docs = [_random_tokens(rng.randint(doc_tokens // 2 + 1, doc_tokens * 3 // 2), rng)
            for _ in range(n_docs)]
    return [docs[d] + _random_tokens(positive_int("question_tokens", question_tokens), rng)
            for d in zipf_choices(n_docs, n_queries, zipf_s, rng)]


def rag_prompts(n_docs: int, n_queries: int, doc_tokens: int, k: int, system_tokens: int,
                question_tokens: int, ordered: bool, zipf_s: float = 1.0,
                seed: int = 0) -> list[list[int]]:
    """RAG: a shared system prompt, `k` retrieved passages, a question.

    Passages are drawn by Zipf popularity and placed by rank (`ordered`) or as retrieved. A
    prefix cache reuses a passage only when everything before it matches too.
    """
    rng = random.Random(seed)
    system = _random_tokens(positive_int("system_tokens", system_tokens), rng)
    docs = [_random_tokens(positive_int("doc_tokens", doc_tokens), rng) for _ in range(n_docs)]
    prompts = []
    for _ in range(positive_int("n_queries", n_queries)):
        picked = list(dict.fromkeys(zipf_choices(n_docs, 4 * k, zipf_s, rng)))[:k]
        chosen = sorted(picked) if ordered else picked
        prompt = system + [t for d in chosen for t in docs[d]]
        prompts.append(prompt + _random_tokens(positive_int("question_tokens", question_tokens),
                                               rng))
    return prompts


def replay_steps(prompts: Sequence[Tokens], block_size: int, capacity_tokens: int,
                 in_flight: int = 1) -> Iterator[tuple[int, RadixCache]]:
    """`replay` one request at a time: after each, (its prompt's cached tokens, the cache)."""
    in_flight = positive_int("in_flight", in_flight)
    cache, running = RadixCache(block_size, capacity_tokens), []
    for prompt in prompts:
        hit = cache.match(prompt)
        running.append(cache.acquire(prompt))
        cache.insert(prompt)
        if len(running) > in_flight - 1:
            cache.release(running.pop(0))
        yield hit, cache


def replay(prompts: Sequence[Tokens], block_size: int, capacity_tokens: int,
           in_flight: int = 1) -> ReplayResult:
    """Serve `prompts` in order through a fresh `RadixCache`; `in_flight` requests stay pinned.

    Each request looks up its prompt, pins the hit, caches the prompt, and is released once
    `in_flight` later requests have started (requests overlap, as in a running batch).
    """
    steps = list(replay_steps(prompts, block_size, capacity_tokens, in_flight))
    if not steps:
        raise ValueError("pass at least one prompt to replay")
    s = steps[-1][1].stats
    return ReplayResult(s.query_tokens, s.hit_tokens, s.evicted_tokens)


def hit_rate_grid(prompts: Sequence[Tokens], block_sizes: Sequence[int],
                  capacities: Sequence[int]) -> dict[tuple[int, int], float]:
    """Hit rate of `replay` for each (block size, capacity in tokens)."""
    return {(b, c): replay(prompts, b, c).hit_rate for b in block_sizes for c in capacities}


"""Source-disjoint noise (docs/design.md §2): clips are grouped by source recording and the groups are
split into disjoint pools, one per session, so that no two sessions, hence never train and
test of any fold, hear noise cut from the same recording. Each utterance then gets one fixed
clip of its session's pool, chosen from a hash of (seed, noise corpus, utterance id) so that
the choice does not depend on manifest order or on which subset of utterances is loaded."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from trnet.corpora import natural_key

Row = dict[str, Any]


def noise_pools(noise_rows: Sequence[Row], n_pools: int = 5, seed: int = 0) -> list[list[Row]]:
    """Split the clips into `n_pools` disjoint pools of whole source groups, balanced in clip
    count and with each category spread over the pools; deterministic given `seed` and
    independent of row order. Each pool is sorted by id."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in sorted(noise_rows, key=lambda r: str(r["id"])):
        groups[str(r["source"])].append(r)
    if len(groups) < n_pools:
        raise ValueError(f"{len(groups)} noise source recording(s) cannot fill {n_pools} disjoint pools")
    rng = np.random.default_rng([seed, n_pools])
    sources = sorted(groups)
    # largest groups first (greedy balancing works best that way); random order among equals
    order = sorted(rng.permutation(len(sources)), key=lambda i: -len(groups[sources[i]]))
    pools: list[list[Row]] = [[] for _ in range(n_pools)]
    per_category: list[Counter[str]] = [Counter() for _ in range(n_pools)]
    tiebreak = rng.permutation(n_pools)
    for i in order:
        group = groups[sources[i]]
        category = Counter(str(r["category"]) for r in group).most_common(1)[0][0]
        # the pool with the fewest clips of this category, then the fewest clips overall
        best = min(range(n_pools), key=lambda p: (per_category[p][category], len(pools[p]), tiebreak[p]))
        pools[best].extend(group)
        per_category[best][category] += len(group)
    return [sorted(pool, key=lambda r: str(r["id"])) for pool in pools]


def _utterance_rng(seed: int, corpus_name: str, utt_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\x1f{corpus_name}\x1f{utt_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def assign_noise(utterances: Sequence[Row], noise_rows: Sequence[Row], seed: int, corpus_name: str) -> dict[str, Row]:
    """utterance id -> its noise clip for this noise corpus (`corpus_name`, e.g. "esc50") and
    seed. Session i of the sorted session names draws from pool i; the same clip serves every
    SNR."""
    sessions = sorted({str(u["session"]) for u in utterances}, key=natural_key)
    pools = noise_pools(noise_rows, n_pools=len(sessions), seed=seed)
    pool_of = dict(zip(sessions, pools, strict=False))
    out: dict[str, Row] = {}
    for u in utterances:
        pool = pool_of[str(u["session"])]
        out[str(u["id"])] = pool[int(_utterance_rng(seed, corpus_name, str(u["id"])).integers(len(pool)))]
    return out

"""The condition store: clean, noisy and enhanced LMFB of every utterance under every
condition, computed once and memory-mapped (docs/design.md §2, §4).

    build(BuildSpec(...), out)         # trnet conditions; resumes after a kill (builder.py)
    store = ConditionStore(out)        # read access (reader.py)
    store.noisy(("esc50", 0))[i]       # X of utterance i at 0 dB; layout.py owns names and paths
"""

from trnet.store.builder import CHUNK, BuildSpec, ChunkMap, build, load_enhancer, print_summary
from trnet.store.layout import (
    SNRS,
    Condition,
    SettingsChanged,
    StoreError,
    condition_name,
    condition_snr,
    conditions,
    parse_condition,
)
from trnet.store.reader import ConditionStore

__all__ = [
    "CHUNK",
    "SNRS",
    "BuildSpec",
    "ChunkMap",
    "Condition",
    "ConditionStore",
    "SettingsChanged",
    "StoreError",
    "build",
    "condition_name",
    "condition_snr",
    "conditions",
    "load_enhancer",
    "parse_condition",
    "print_summary",
]

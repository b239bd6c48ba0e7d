"""Experimental protocol: leave-one-speaker-out folds, SNR mixing, and source-disjoint noise
assignment (docs/design.md §2, §3)."""

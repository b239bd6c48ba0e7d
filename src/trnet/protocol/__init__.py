"""Experimental protocol: leave-one-speaker-out folds, SNR mixing, and source-disjoint noise
assignment (SPEC §2, §3)."""

"""Evaluation (paper §5, SPEC §8): metrics, prediction over a condition, the reproduction
recipe, report tables and figures, and model complexity (Table 2)."""

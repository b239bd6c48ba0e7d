"""Evaluation a library user needs (paper §5, docs/design.md §8): UAR/WAR (`metrics`), a model's
predictions over one speaker under one condition (`evaluate`), and model complexity,
paper Table 2 (`complexity`). The paper's experiments on top of them live in
`trnet.experiments`."""

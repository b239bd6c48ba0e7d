"""Training: the loop with validation-only model selection and exact resume, and `trnet train`.
Batches come from `trnet.batches`, the run directory is `trnet.runs`."""

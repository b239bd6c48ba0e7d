"""Training: batches from the condition store, the loop with validation-only model selection,
atomic safetensors checkpoints and exact resume."""

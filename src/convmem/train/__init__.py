"""One explicit training loop for the emotion SLM on HF Accelerate (loop) and its atomic,
resumable checkpoints (checkpoint)."""

"""Self-built training corpus: two-person dialogue audio and its timeline."""

"""The infer stage: predictions and metrics of every run from its saved arrays (numpy only)."""

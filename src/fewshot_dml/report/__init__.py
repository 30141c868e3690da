"""The aggregate stage: summaries, statistics, tables, figures and results.md."""

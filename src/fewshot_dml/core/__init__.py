"""Plumbing, torch-free: atomic I/O, the run layout, run directories, logging, timing, the stage runner."""

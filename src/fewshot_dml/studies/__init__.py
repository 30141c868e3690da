"""Tools over DVC experiments: the cross-experiment study and the tuning report."""

"""What exists, torch-free: the datasets' registry."""

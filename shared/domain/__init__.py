"""Domain logic: plain Python, no Azure imports, no I/O."""

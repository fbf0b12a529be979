"""Small tasks generated locally with a fixed seed (for the demo, tests and benchmarks)."""

"""Durable orchestrators: deterministic generators (no I/O, clock or randomness outside the context)."""

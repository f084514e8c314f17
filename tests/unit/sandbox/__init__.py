"""Unit tests of the sandbox core (no servers; some start sandbox worker processes)."""

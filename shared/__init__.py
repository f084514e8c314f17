"""Weft's plain-Python core. Nothing in this package imports ``azure.functions``."""

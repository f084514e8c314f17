"""Triggers and activities: a few lines each, parsing a DTO and calling one function of the core."""

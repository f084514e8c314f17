"""Weft's Python client and ``weft`` CLI: typed calls over the HTTP API (httpx), following runs to the end.

    from weftclient import WeftClient
    with WeftClient("http://localhost:7071") as weft:
        run = weft.start_run({"mode": "plan", "plan": {...}})
        view = weft.follow(run.id)
"""

from weftclient.client import ApiError, WeftClient, client_from_env

__all__ = ["ApiError", "WeftClient", "client_from_env"]

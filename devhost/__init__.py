"""devhost: a local runtime for a v2-model Python Azure Functions app with Durable Functions.

It stands in for Azure Functions Core Tools (`func start`) where the host cannot be installed: it indexes the app's
functions, serves its HTTP routes and the Durable HTTP API (so the real ``DurableOrchestrationClient`` works), replays
orchestrators through the real ``azure-functions-durable`` executor, runs activities in worker threads, polls
Azurite queues and fires timer triggers. State lives in SQLite so work survives a restart.

It is developer tooling, not a production runtime, and it imports nothing from the app it hosts.
"""

from devhost.engine import Engine, InstanceStatus
from devhost.host import DevHost
from devhost.index import FunctionIndex, load_app
from devhost.store import Store

__all__ = ["DevHost", "Engine", "FunctionIndex", "InstanceStatus", "Store", "load_app"]

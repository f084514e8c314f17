"""Weft's Functions app: builds the DFApp and registers the blueprints. Nothing else lives here."""

import azure.durable_functions as df
import azure.functions as func

from activities.catalog_api import bp as catalog_api
from activities.code_steps import bp as code_activities
from activities.maintenance import bp as maintenance
from activities.mcp_tools import bp as mcp_tools
from activities.ops_api import bp as ops_api
from activities.runs_api import bp as runs_api
from activities.runs_queue import bp as runs_queue
from activities.task_steps import bp as task_activities
from activities.tool_calls import bp as tool_activities
from orchestrations.fan_out import bp as step_orchestrator
from orchestrations.run import bp as run_orchestrator

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(runs_api)
app.register_functions(runs_queue)
app.register_functions(catalog_api)
app.register_functions(ops_api)
app.register_functions(maintenance)
app.register_functions(mcp_tools)
app.register_functions(run_orchestrator)
app.register_functions(step_orchestrator)
app.register_functions(tool_activities)
app.register_functions(code_activities)
app.register_functions(task_activities)

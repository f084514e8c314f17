"""Weft's Functions app: builds the DFApp and registers the blueprints. Nothing else lives here."""

import azure.durable_functions as df
import azure.functions as func

from activities.items import bp as items_bp
from activities.runs import bp as runs_bp
from orchestrations.fan_out import bp as fan_out_bp

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(runs_bp)
app.register_functions(items_bp)
app.register_functions(fan_out_bp)

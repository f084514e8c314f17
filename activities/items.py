"""Activities of the fan-out job."""

from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="item")
def describe_item(item: Any) -> dict[str, Any]:
    text = str(item)
    return {"item": item, "length": len(text), "upper": text.upper()}

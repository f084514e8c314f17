// An MCP client independent of the Python SDK: the TypeScript SDK (installed by scripts/node_tools.sh).
// usage: node mcp_ts_client.mjs <endpoint url> <json list of steps> [key]
// Steps: {"op": "list_tools"} | {"op": "call", "name": ..., "arguments": {...}} | {"op": "list_resources"}
//        | {"op": "read", "uri": ...} | {"op": "prompt", "name": ..., "arguments": {...}}
// Prints one JSON object: {"server": {...}, "instructions": ..., "results": [...]}, where a failed step is
// {"error": {"code": ..., "message": ...}}. A connection failure prints {"connect_error": ...} and exits 3.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, stepsJson, key] = process.argv.slice(2);
const steps = JSON.parse(stepsJson || "[]");
const headers = { Authorization: "Bearer ts-client-token" };
if (key) headers["x-functions-key"] = key;

const client = new Client({ name: "weft-ts-test-client", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
try {
  await client.connect(transport);
} catch (err) {
  console.log(JSON.stringify({ connect_error: String(err && err.message ? err.message : err) }));
  process.exit(3);
}

const results = [];
for (const step of steps) {
  try {
    if (step.op === "list_tools") results.push(await client.listTools());
    else if (step.op === "call") results.push(await client.callTool({ name: step.name, arguments: step.arguments || {} }));
    else if (step.op === "list_resources") results.push(await client.listResources());
    else if (step.op === "read") results.push(await client.readResource({ uri: step.uri }));
    else if (step.op === "prompt") results.push(await client.getPrompt({ name: step.name, arguments: step.arguments || {} }));
    else results.push({ error: { code: null, message: `unknown op ${step.op}` } });
  } catch (err) {
    results.push({ error: { code: err.code ?? null, message: String(err.message || err) } });
  }
}
console.log(
  JSON.stringify({
    server: client.getServerVersion(),
    instructions: client.getInstructions() ?? null,
    session: transport.sessionId ?? null,
    results,
  }),
);
await client.close();

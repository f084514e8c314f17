// Weft's MCP tools through the TypeScript SDK (installed by scripts/node_tools.sh): a client independent of Python.
// usage: node weft_ts_client.mjs <endpoint url> <json list of steps> [bearer token]
// Steps: {"op": "list_tools"} | {"op": "call", "name": ..., "arguments": {...}}
//        | {"op": "poll", "run_id_from": <index of an earlier step>, "wait_s": n, "tries": n}
// A "call" step's result is the tool's JSON answer (parsed) with "isError"; "poll" calls get_run with the run_id of
// an earlier answer until the run is no longer pending or running. Prints {"server", "results"} as one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, stepsJson, token] = process.argv.slice(2);
const steps = JSON.parse(stepsJson || "[]");
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const client = new Client({ name: "weft-ts-test-client", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
await client.connect(transport);

const timeout = { timeout: 120000 };
async function call(name, args) {
  const result = await client.callTool({ name, arguments: args }, undefined, timeout);
  return { isError: result.isError === true, body: JSON.parse(result.content[0].text) };
}

const results = [];
for (const step of steps) {
  try {
    if (step.op === "list_tools") results.push(await client.listTools());
    else if (step.op === "call") results.push(await call(step.name, step.arguments || {}));
    else if (step.op === "poll") {
      const runId = results[step.run_id_from].body.run_id;
      let last = null;
      for (let i = 0; i < (step.tries || 20); i++) {
        last = await call("get_run", { run_id: runId, wait_s: step.wait_s || 5 });
        if (!["pending", "running"].includes(last.body.status)) break;
      }
      results.push(last);
    } else results.push({ error: { message: `unknown op ${step.op}` } });
  } catch (err) {
    results.push({ error: { code: err.code ?? null, message: String(err.message || err) } });
  }
}
console.log(JSON.stringify({ server: client.getServerVersion(), instructions: client.getInstructions() ?? null, results }));
await client.close();

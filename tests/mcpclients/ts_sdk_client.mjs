// The TypeScript SDK's client, 1.x (npm @modelcontextprotocol/sdk) or 2.x (@modelcontextprotocol/client),
// pinned in package.json, as a client nobody here wrote would use it: connect to the bridge with a
// bearer token, list the tools, make each call of a plan and print what the SDK handed back, one
// JSON document on stdout.
//
//   node ts_sdk_client.mjs <1|2> <url> <token>   (the plan, a JSON list of {tool, arguments}, on stdin)
const [major, url, token] = process.argv.slice(2);
const { Client, StreamableHTTPClientTransport } = major === "1"
  ? { ...(await import("@modelcontextprotocol/sdk/client/index.js")),
      ...(await import("@modelcontextprotocol/sdk/client/streamableHttp.js")) }
  : await import("@modelcontextprotocol/client");

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const plan = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const client = new Client({ name: "orkiva-tests-ts-sdk", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);
const tools = (await client.listTools()).tools;
const calls = [];
for (const { tool, arguments: args } of plan) {
  try {
    // callTool checks structuredContent against the tool's outputSchema (1.x: on errors too)
    const result = await client.callTool({ name: tool, arguments: args });
    calls.push({ tool, result });
  } catch (error) {
    calls.push({ tool, thrown: { name: error.constructor.name, code: error.code, message: error.message,
                                 data: error.data ?? null } });
  }
}
await client.close();
console.log(JSON.stringify({ protocolVersion: transport.protocolVersion ?? null, tools, calls }));

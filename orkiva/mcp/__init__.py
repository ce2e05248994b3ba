"""The MCP adapter: the tools (server.py), the /v1/mcp view (view.py), waiting (waiting.py)."""

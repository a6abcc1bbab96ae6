"""Tools the chat model may call: the interface (base), the set offered in a session (box), the built-in
tools (calculator, clock, wikipedia) and MCP servers (mcp_client). Imported only when tools are on."""

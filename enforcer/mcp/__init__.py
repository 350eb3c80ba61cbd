"""The MCP endpoint (`pgwarden mcp`): agents that speak Model Context Protocol get the gateway's gate.

Owns: an MCP server (stdio or streamable HTTP) whose tools run SQL *through the gateway*, as a
client of its local socket (``listener.mcp_socket``), so that every statement takes the one
analysis -> decision -> enforcement -> audit path of a wire client, with ``session.protocol =
"mcp"``; turning refusals into advice an agent can act on; returning held statements at once
and their results later.
Never: decides about a statement itself (only ``explain`` evaluates the policy, and runs nothing),
talks to Postgres directly, or holds an upstream credential.
"""

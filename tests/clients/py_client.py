"""Drives an MCP server through berth with the official Python SDK (`mcp` on PyPI).

Usage: py_client.py URL --transport streamable|sse --mode legacy|auto
           [--hidden NAME]... [--refused NAME]... TOOL JSON_ARGS EXPECT

Lists the tools (TOOL must be among them, no --hidden one), calls each
--refused tool (it must fail with berth's refusal, -32003 "... not allowed"),
calls TOOL with JSON_ARGS and checks that the text of the result contains
EXPECT. Prints one line and exits 0 on success, 1 with the reason otherwise.
"""

import argparse
import asyncio
import json
import sys

from mcp import Client, MCPError
from mcp.client.sse import sse_client


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--transport", choices=["streamable", "sse"], default="streamable")
    p.add_argument("--mode", default="auto")
    p.add_argument("--hidden", action="append", default=[])
    p.add_argument("--refused", action="append", default=[])
    p.add_argument("tool")
    p.add_argument("args")
    p.add_argument("expect")
    a = p.parse_args()
    server = a.url if a.transport == "streamable" else sse_client(a.url)
    async with Client(server, mode=a.mode, read_timeout_seconds=60) as client:
        tools = await client.list_tools()
        names = [t.name for t in tools.tools]
        if a.tool not in names:
            print(f"tool {a.tool!r} not listed: {names}")
            return 1
        shown = [n for n in a.hidden if n in names]
        if shown:
            print(f"tools {shown!r} are listed: {names}")
            return 1
        for name in a.refused:
            try:
                result = await client.call_tool(name, {})
            except MCPError as e:
                # berth's refusal: -32003, the middleware's message.
                if e.code != -32003 or "not allowed" not in e.error.message:
                    print(f"{name} failed otherwise: {e}")
                    return 1
                continue
            print(f"{name} was not refused: {result}")
            return 1
        result = await client.call_tool(a.tool, json.loads(a.args))
        texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
        text = " ".join(texts)
        if a.expect not in text:
            print(f"result {text!r} lacks {a.expect!r}")
            return 1
        version = getattr(client.session, "protocol_version", "?")
        print(f"ok: {len(names)} tools, protocol {version}, {a.tool} -> {text[:60]!r}")
        return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

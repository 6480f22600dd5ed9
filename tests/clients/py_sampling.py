"""Server-initiated requests through berth: the client answers a sampling
request the server sends while handling the client's tool call.

Usage: py_sampling.py URL

Connects (handshake era) with a sampling callback, calls server-everything's
`trigger-sampling-request` tool and checks that the sampled text came back.
"""

import asyncio
import sys

from mcp import Client, types


async def sample(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled-by-berth-test"),
        model="test-model",
        stop_reason="endTurn",
    )


async def main() -> int:
    url = sys.argv[1]
    async with Client(url, mode="legacy", sampling_callback=sample, read_timeout_seconds=60) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        tool = next((t for t in tools if "sampling" in t), None)
        if tool is None:
            print(f"no sampling tool in {tools}")
            return 1
        result = await client.call_tool(tool, {"prompt": "hello", "maxTokens": 10})
        text = " ".join(getattr(c, "text", "") for c in result.content)
        if "sampled-by-berth-test" not in text:
            print(f"sampling answer missing from {text!r}")
            return 1
        print(f"ok: {tool} -> {text[:80]!r}")
        return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

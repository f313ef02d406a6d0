"""The app's script endpoints as MCP tools: a real app on 127.0.0.1 with its MCP server, and the MCP client library
over the streamable HTTP transport gradio serves at /gradio_api/mcp/. The tools are listed with what an assistant
needs (what each returns, the bounds, that an image is a URL or an upload), ``describe`` is called on an example
picture with the committed shapes models, and a client's mistakes come back as tool errors while the server keeps
serving. The live endpoint is no tool."""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from helpers import EXAMPLES, serve

TOOLS = {"caption", "segment", "analyze", "describe", "ask", "compare"}


@pytest.fixture(scope="module")
def mcp_url():
    demo, url = serve(("shapes",), ("shapes",), mcp_server=True)
    try:
        yield url + "gradio_api/mcp/"
    finally:
        demo.close()


def session_run(url: str, work) -> Any:
    """Open an MCP session on ``url`` (streamable HTTP), run ``await work(session)``, close it; its result."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def run():
        async with streamablehttp_client(url, timeout=30) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await asyncio.wait_for(work(session), timeout=120)

    return asyncio.run(run())


def picture(name: str = "shapes.png") -> str:
    """An example picture as an MCP client uploads a file: a ``data:`` URL."""
    return "data:image/png;base64," + base64.b64encode((EXAMPLES / name).read_bytes()).decode()


def test_the_tools_are_the_script_endpoints_with_what_an_assistant_needs(mcp_url):
    listed = session_run(mcp_url, lambda session: session.list_tools()).tools
    tools = {tool.name: tool for tool in listed}
    assert set(tools) == TOOLS, "every script endpoint is a tool, and live_frame is none"
    describe = tools["describe"]
    assert "cannot see" in describe.description and "alt_text" in describe.description
    assert "max_objects: an integer from 0 to 50" in describe.description  # the bounds, from the declarations
    image = describe.inputSchema["properties"]["image"]
    assert image["type"] == "string" and "URL" in image["description"] and "upload" in image["description"]
    assert describe.inputSchema["properties"]["captioner"]["enum"] == ["shapes"]  # the menu, nothing else
    assert describe.inputSchema["properties"]["options"]["type"] == "object"
    assert tools["compare"].inputSchema["properties"]["captioners"]["type"] == "array"
    assert "threshold: a number from 0 to 1" in tools["segment"].description
    for tool in listed:
        assert tool.description.split(". ")[0] and "Returns:" in tool.description, tool.name
        assert tool.inputSchema["required"] == (["image", "question"] if tool.name == "ask" else ["image"])
    # The schema route the Hugging Face MCP server reads (the test below finds it gone with MCP off): the same tools;
    # it lists every endpoint, live_frame marked as no tool.
    schema = json.loads(urllib.request.urlopen(mcp_url + "schema", timeout=30).read())
    assert {tool["name"] for tool in schema if tool["meta"]["mcp_type"] == "tool"} == TOOLS


def test_describe_says_what_the_example_picture_shows(mcp_url):
    arguments = {"image": picture(), "captioner": "shapes", "segmenter": "shapes", "options": {"max_objects": 5}}
    result = session_run(mcp_url, lambda session: session.call_tool("describe", arguments))
    assert not result.isError, result.content
    text = " ".join(part.text for part in result.content if part.type == "text")
    # The committed shapes models on their own example (README.md shows the same words).
    assert "A yellow triangle to the left of a blue circle and a red triangle." in text
    assert "2 triangles: one in the centre and one at the bottom left. 1 circle at the bottom." in text


def test_ask_counts_the_example_pictures_triangles(mcp_url):
    arguments = {"image": picture(), "question": "How many triangles are there?", "segmenter": "shapes"}
    result = session_run(mcp_url, lambda session: session.call_tool("ask", arguments))
    assert not result.isError, result.content
    text = " ".join(part.text for part in result.content if part.type == "text")
    answer = ast.literal_eval(text)  # gradio's MCP server gives a JSON output as its Python form
    assert answer["answer"] == "2" and answer["source"] == "objects" and len(answer["instances"]) == 2
    assert answer["sentence"] == "There are 2 triangles: one in the centre and one at the bottom left."
    assert {answer["objects"][index]["label"] for index in answer["instances"]} == {"triangle"}


def test_a_clients_mistakes_are_tool_errors_and_the_server_keeps_serving(mcp_url):
    async def calls(session):
        too_many = await session.call_tool("describe", {"image": picture(), "options": {"max_objects": 10_000}})
        elsewhere = await session.call_tool("caption", {"image": "http://127.0.0.1:1/etc/passwd"})
        not_a_file = await session.call_tool("caption", {"image": "/etc/passwd"})
        fine = await session.call_tool("caption", {"image": picture(), "captioner": "shapes"})
        return too_many, elsewhere, not_a_file, fine

    too_many, elsewhere, not_a_file, fine = session_run(mcp_url, calls)
    assert too_many.isError and "max_objects" in too_many.content[0].text
    for refused in (elsewhere, not_a_file):  # no server file, no fetch of a loopback address
        assert refused.isError and "root:" not in refused.content[0].text
    assert not fine.isError and fine.content[0].text.startswith("A ")


def test_mcp_is_on_unless_turned_off_and_off_means_no_route(monkeypatch):
    import app

    assert app.parse_args([]).mcp is True and app.launch_options(app.parse_args([]))["mcp_server"] is True
    assert app.parse_args(["--no-mcp"]).mcp is False
    monkeypatch.setenv("APP_MCP", "0")
    assert app.launch_options(app.parse_args([]))["mcp_server"] is False
    demo, url = serve(("shapes",), ("shapes",), mcp_server=False)
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "gradio_api/mcp/schema", timeout=30)
        assert refused.value.code == 404
    finally:
        demo.close()

"""Drives the test suite's fake model server with the official `openai` package.

If this passes, the fake answers chat completions (plain and streamed), tool calls, usage,
auth errors and rate limits in the shapes the real API uses. Run by tests/core.rs.
"""
import json
import os
import sys

try:
    import openai
except ImportError:
    sys.exit("the `openai` package is missing: pip install -r tests/sdk_checks/requirements.txt")

TOOLS = [{
    "type": "function",
    "function": {
        "name": "createOrUpdateFiles",
        "description": "write files",
        "parameters": {"type": "object", "properties": {"files": {"type": "array"}}},
    },
}]


def main() -> None:
    client = openai.OpenAI(max_retries=2)

    first = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "build"}],
        tools=TOOLS,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "createOrUpdateFiles"
    arguments = json.loads(call.function.arguments)
    assert arguments["files"][0] == {"path": "app/page.tsx", "content": "hello"}, arguments
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens

    # The next scripted answer is a 429 with Retry-After: 0; the SDK retries by itself.
    second = client.chat.completions.create(
        model="fake-model",
        messages=[
            {"role": "user", "content": "build"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Wrote 1 file(s)"},
        ],
        tools=TOOLS,
    )
    assert "<task_summary>" in second.choices[0].message.content
    assert second.choices[0].finish_reason == "stop"

    titled = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "system", "content": "Reply with a title"}, {"role": "user", "content": "x"}],
    )
    assert titled.choices[0].message.content == "Habit Tracker"

    # An image in a prompt, as the SDK's documented content parts carry it.
    pictured = client.chat.completions.create(
        model="fake-model",
        messages=[
            {"role": "system", "content": "Describe"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            },
        ],
    )
    assert pictured.choices[0].message.content

    try:
        openai.OpenAI(api_key="wrong", max_retries=0).chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}]
        )
        raise AssertionError("a bad key must be refused")
    except openai.AuthenticationError as error:
        assert error.status_code == 401

    # Streaming: a tool call whose arguments arrive in pieces, then text, then usage.
    streamed = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "build"}],
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    names, arguments, finish, usage = "", "", None, None
    for chunk in streamed:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                names += call.function.name or ""
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert names == "createOrUpdateFiles", names
    assert json.loads(arguments)["files"][0]["path"] == "app/streamed.tsx", arguments
    assert finish == "tool_calls", finish
    assert usage is not None and usage.total_tokens == 150, usage

    text = ""
    with client.chat.completions.stream(
        model="fake-model", messages=[{"role": "user", "content": "summarise"}], tools=TOOLS
    ) as events:
        for event in events:
            if event.type == "content.delta":
                text += event.delta
        final = events.get_final_completion()
    assert "<task_summary>" in text, text
    assert final.choices[0].message.content == text

    models = client.models.list()
    assert models.data[0].id == "fake-model"
    print("openai SDK check passed")


if __name__ == "__main__":
    main()

"""What the worker makes of a provider's event stream, beyond what the simulator sends."""

import asyncio

import pytest

from generation.provider import DONE, ProviderError, _sse_data


def events(lines: list[str]) -> list[dict]:
    async def lines_of():
        for line in lines:
            yield line

    async def read():
        return [event async for event in _sse_data(lines_of())]

    return asyncio.run(read())


def test_events_are_read_until_done_and_multi_line_data_is_joined():
    lines = ['data: {"a": 1}', "", "event: x", 'data: {"b":', "data: 2}", "", "data: [DONE]", "", 'data: {"c": 3}', ""]
    read = events(lines)
    assert read[:2] == [{"a": 1}, {"b": 2}]
    assert read[2] is DONE and len(read) == 3, "[DONE] is reported, and nothing after it is read"


def test_an_error_event_mid_stream_becomes_a_readable_provider_error():
    with pytest.raises(ProviderError, match="had an error while answering") as raised:
        events(['data: {"choices": []}', "", 'data: {"error": {"message": "overloaded"}}', ""])
    assert "overloaded" in raised.value.detail, "the provider's words go to the log"


def test_a_malformed_event_is_a_provider_error_not_a_crash():
    with pytest.raises(ProviderError, match="malformed"):
        events(["data: {not json", ""])

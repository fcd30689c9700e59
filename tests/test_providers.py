"""What the worker makes of a provider's event stream, beyond what the simulator sends."""

import asyncio

import pytest

from generation import provider
from generation.provider import DONE, ProviderError, _sse_data


def events(lines: list[str], newline: str = "\n", piece: int = 7) -> list[dict]:
    """The events read from `lines`, as the network might deliver them: in pieces that split lines and characters."""
    raw = "".join(line + newline for line in lines).encode()

    async def pieces():
        for at in range(0, len(raw), piece):
            yield raw[at : at + piece]

    async def read():
        return [event async for event in _sse_data(pieces())]

    return asyncio.run(read())


def test_events_are_read_until_done_and_multi_line_data_is_joined():
    lines = ['data: {"a": 1}', "", "event: x", 'data: {"b":', "data: 2}", "", "data: [DONE]", "", 'data: {"c": 3}', ""]
    read = events(lines)
    assert read[:2] == [{"a": 1}, {"b": 2}]
    assert read[2] is DONE and len(read) == 3, "[DONE] is reported, and nothing after it is read"


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
@pytest.mark.parametrize("piece", [1, 3])
def test_events_with_other_line_endings_read_the_same(newline, piece):
    lines = ['data: {"text": "é ✓"}', "", 'data: {"b": 2}', "", "data: [DONE]", ""]
    assert events(lines, newline, piece) == [{"text": "é ✓"}, {"b": 2}, DONE]


def test_an_error_event_mid_stream_becomes_a_readable_provider_error():
    with pytest.raises(ProviderError, match="had an error while answering") as raised:
        events(['data: {"choices": []}', "", 'data: {"error": {"message": "overloaded"}}', ""])
    assert "overloaded" in raised.value.detail, "the provider's words go to the log"


def test_a_malformed_event_is_a_provider_error_not_a_crash():
    with pytest.raises(ProviderError, match="malformed"):
        events(["data: {not json", ""])


def test_the_body_after_done_is_read_so_the_connection_can_be_reused_but_a_server_that_never_ends_it_is_not_waited_for(
    monkeypatch,
):
    monkeypatch.setattr(provider, "DRAIN_SECONDS", 0.05)
    read_to_the_end = []

    async def pieces(forever: bool):
        yield b'data: {"a": 1}\n\ndata: [DONE]\n\n'
        yield b""  # e.g. the chunked body's terminator, read after [DONE]
        if forever:
            await asyncio.Event().wait()  # a server that keeps the stream open
        read_to_the_end.append(forever)

    async def read(forever: bool) -> list[dict]:
        return [event async for event in _sse_data(pieces(forever))]

    assert asyncio.run(read(False)) == [{"a": 1}, DONE] and read_to_the_end == [False]
    assert asyncio.run(read(True)) == [{"a": 1}, DONE] and read_to_the_end == [False]

"""SSE framing survives any text: encode -> a real SSE parser (httpx-sse) -> the same text.

Line breaks in data cannot inject a field or a second event; they come back
as ``\\n`` (SSE cannot carry a bare ``\\r``: every parser normalises it).
"""

from __future__ import annotations

import itertools
import re

import orjson
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from httpx_sse._models import ServerSentEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from app.events.event import Event
from app.events.sse import control_frame, frame, json_frame, ping_frame

LINE_BREAK = re.compile(r"\r\n|\r|\n")


def parse(wire: bytes, cuts: list[int]) -> list[ServerSentEvent]:
    """Feed the wire bytes to the parser in arbitrary pieces, as a socket would."""
    text = wire.decode()
    bounds = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    lines_decoder, decoder = SSELineDecoder(), SSEDecoder()
    events = []
    for start, end in itertools.pairwise(bounds):
        if start == end:
            continue
        for line in lines_decoder.decode(text[start:end]):
            event = decoder.decode(line)
            if event is not None:
                events.append(event)
    for line in lines_decoder.flush():
        event = decoder.decode(line)
        if event is not None:
            events.append(event)
    return events


@settings(max_examples=300, deadline=None)
@given(data=st.text(), event=st.text(), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_any_text_round_trips_as_exactly_one_event(data: str, event: str, cuts: list[int]) -> None:
    wire = frame(data, event=event or "metric", event_id="1795330426360-3")
    [parsed] = parse(wire, cuts)
    assert parsed.data == LINE_BREAK.sub("\n", data)
    assert parsed.id == "1795330426360-3"
    # An event name of nothing but line breaks is left empty, which SSE reads as "message".
    assert parsed.event == (LINE_BREAK.sub("", event or "metric") or "message")


@settings(max_examples=200, deadline=None)
@given(
    payload=st.dictionaries(
        st.text(),
        st.text()
        | st.integers(min_value=-(2**63), max_value=2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False),
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_event_json_survives_the_stream(payload: dict[str, object], cuts: list[int]) -> None:
    ev = Event("1795330426360-0", "annotation", "device/pump-1", orjson.dumps(payload))
    [parsed] = parse(json_frame(ev), cuts)
    assert orjson.loads(parsed.data) == {
        "id": ev.id,
        "type": "annotation",
        "topic": "device/pump-1",
        "ts": 1795330426360,
        "data": payload,
    }
    assert parsed.event == "annotation" and parsed.id == ev.id


def test_control_frames_are_single_events() -> None:
    [ping] = parse(ping_frame(), [])
    assert ping.event == "ping" and ping.id == ""
    [ready] = parse(control_frame("ready", {"cursor": "1-0"}, "1-0", retry=2500), [])
    assert (ready.event, ready.id, ready.retry) == ("ready", "1-0", 2500)


def test_injection_attempt_stays_data() -> None:
    hostile = 'x\n\nevent: reset\nid: 9999999999999-0\ndata: {"owned": true}\n\n'
    events = parse(frame(hostile, event="annotation", event_id="5-0"), [])
    assert len(events) == 1
    assert events[0].event == "annotation" and events[0].id == "5-0"

"""Server-sent events (the WHATWG event-stream format) parsed incrementally from bytes.

A network read can end anywhere: inside a line, inside a UTF-8 character, between the \\r
and \\n of a line ending. The parser keeps the incomplete tail and decodes only whole lines,
so the events do not depend on how the bytes were split (tested at every split point).

Lines end with \\n, \\r\\n or \\r; `:` starts a comment (keep-alives); `data:` lines
accumulate (joined with \\n) until a blank line dispatches the event; `event:` names it;
other fields are ignored. At the end of the stream a pending event is dispatched even without
its blank line (the spec drops it; a server that closes right after `data: [DONE]\\n` is
common enough to be worth reading)."""

from __future__ import annotations

from dataclasses import dataclass

DONE = "[DONE]"
# Bound on one line / one event: a streamed chunk is a few hundred bytes; 8 MiB means the
# server is not sending event-stream lines at all.
MAX_EVENT_BYTES = 8 * 2**20


class SSEError(ValueError):
    """The byte stream is not an event stream (a line or event over MAX_EVENT_BYTES)."""


@dataclass(frozen=True)
class Event:
    data: str
    event: str = "message"


class SSEParser:
    """feed(bytes) -> the events completed by those bytes; close() -> the last one, if any."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._first = True
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[Event]:
        self._buf += chunk
        out: list[Event] = []
        start = 0
        buf = self._buf
        n = len(buf)
        while True:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                if cr + 1 == n:  # a \r last: wait, the next byte may be its \n
                    break
                end, nxt = cr, cr + (2 if buf[cr + 1] == 0x0A else 1)
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            self._line(bytes(buf[start:end]), out)
            start = nxt
        del buf[:start]
        if len(buf) > self._max:
            raise SSEError(f"an event-stream line longer than {self._max} bytes")
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        if self._buf:
            tail = bytes(self._buf).rstrip(b"\r")
            self._buf.clear()
            self._line(tail, out)
        self._line(b"", out)
        return out

    def _line(self, raw: bytes, out: list[Event]) -> None:
        if self._first:
            self._first = False
            if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark starts the stream only
                raw = raw[3:]
        if not raw:
            if self._data:
                out.append(Event("\n".join(self._data), self._event or "message"))
            self._data, self._size, self._event = [], 0, ""
            return
        if raw.startswith(b":"):
            return
        line = raw.decode("utf-8", errors="replace")
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._size += len(raw)
            if self._size > self._max:
                raise SSEError(f"an event larger than {self._max} bytes")
            self._data.append(value)
        elif field == "event":
            self._event = value

"""Incremental Server-Sent Events parser (WHATWG event-stream rules).

The pure-Python twin of the hand-written ``sse_c.pyx`` (used when extensions are off or
not built); the two must agree (tests/fast/test_sse_parity.py).

``feed(data)`` takes any slice of the byte stream and returns the events it
completed, as ``(event, data)`` tuples: ``event`` is the ``event:`` field as
``str`` or ``None``, ``data`` the ``data:`` lines joined by ``\\n`` as
``bytes``.  Lines end with CRLF, LF or CR.  Each line end in a feed is searched
for once, and consumed lines leave the buffer once per feed (an unfinished line
fed a byte at a time is searched again each time here; the compiled twin keeps
where its search stopped).
"""

class SSEParser:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._data = []
        self._event = None
        self._pending_cr = False

    def feed(self, data) -> list:
        events = []
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        if self._pending_cr and n > 0:
            # A CR ended the previous feed; a LF right after it belongs to it.
            self._pending_cr = False
            if buf[0] == 10:
                pos = 1
        # Next CR and LF positions, each searched again only once passed, so a
        # buffer is scanned a bounded number of times whatever the line count.
        lf = buf.find(b"\n", pos)
        cr = buf.find(b"\r", pos)
        while lf >= 0 or cr >= 0:
            if cr < 0 or (0 <= lf < cr):
                end = lf
                nxt = lf + 1
            else:
                end = cr
                nxt = cr + 1
                if nxt < n:
                    if buf[nxt] == 10:
                        nxt += 1
                else:
                    self._pending_cr = True
            self._line(bytes(buf[pos:end]), events)
            pos = nxt
            if 0 <= lf < pos:
                lf = buf.find(b"\n", pos)
            if 0 <= cr < pos:
                cr = buf.find(b"\r", pos)
        if pos:
            del buf[:pos]
        return events

    def _line(self, line: bytes, events: list):
        if not line:
            if self._data:
                events.append((self._event, b"\n".join(self._data)))
            self._data = []
            self._event = None
            return
        if line[0] == 58:  # ":" comment / keep-alive
            return
        i = line.find(b":")
        if i < 0:
            field = line
            value = b""
        else:
            field = line[:i]
            value = line[i + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")

    def close(self) -> list:
        """End of stream: an unterminated last event is dropped, as the spec says."""
        self._buf.clear()
        self._data = []
        self._event = None
        return []

    @property
    def buffered(self) -> int:
        return len(self._buf)


class ScanRelay:
    """The scan of a relay that passes a provider's SSE bytes on unchanged: the bytes go out
    as they came; an event whose data holds one of ``keys`` (or whose ``event:`` name is in
    ``names``) is handed to ``self.see(event, data)``, which a subclass defines.  Twin of
    ``sse_c.ScanRelay``."""

    __slots__ = ("_keys", "_names", "_parser")

    def __init__(self, keys, names=None) -> None:
        self._parser = SSEParser()
        self._keys = tuple(keys)
        if len(self._keys) > 4:  # as the compiled twin, which keeps 4 keys' anchors
            raise ValueError("at most 4 keys")
        for key in self._keys:
            if type(key) is not bytes or not key:
                raise TypeError("keys are non-empty bytes")
        self._names = frozenset(names) if names else None

    def feed(self, data):
        names = self._names
        for event, payload in self._parser.feed(data):
            for key in self._keys:
                if payload.find(key) >= 0:
                    self.see(event, payload)
                    break
            else:
                if names is not None and event in names:
                    self.see(event, payload)
        return data

    def close(self) -> bytes:
        self._parser.close()
        return b""

    def see(self, event, data) -> None:
        pass

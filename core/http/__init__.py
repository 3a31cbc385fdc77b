"""Sans-IO HTTP semantics (RFC 9110): decisions on values, no sockets and no Trio.

``reply`` is the one reply function (a ``representation`` in: body, validators,
representation headers and range policy; status, header fields and body slice out) and
the RFC 9110 policy; ``ranges`` parses ``Range`` and decides 200/206/416; ``conditional``
evaluates ``If-*`` preconditions; ``validators`` holds entity tags and the choice of a
strong validator; ``dates`` formats and parses HTTP dates; ``contentrange`` writes and
reads ``Content-Range``; ``multipart`` lays out ``multipart/byteranges`` as a segment map;
``disposition`` writes ``Content-Disposition`` values.
"""

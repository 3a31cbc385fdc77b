"""Sans-IO HTTP semantics (RFC 9110): decisions on values, no sockets and no Trio.

``ranges`` parses ``Range`` and decides 200/206/416; ``conditional`` evaluates
``If-*`` preconditions and validators; ``multipart`` lays out ``multipart/byteranges``
as a segment map; ``representation`` is what a route hands to the reply logic (body,
validators, media type); ``disposition`` writes ``Content-Disposition`` values.
"""

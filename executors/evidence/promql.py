"""A structural check of PromQL text before it is sent: bounded, balanced, no comment, no stray control bytes.

``policies`` already escapes every label value it inserts; this is the second belt.
An injected value that escaped its string would show as an unbalanced quote or
bracket, or reach for ``#`` to comment out the rest of the query: all refused here.
"""

from __future__ import annotations

MAX_PROMQL_CHARS = 4000
_PAIRS = {")": "(", "]": "[", "}": "{"}
_QUOTES = frozenset("\"'`")
_WHITESPACE = frozenset(" \t\r\n")


def check_promql(query: str, *, max_chars: int = MAX_PROMQL_CHARS) -> str:
    """Return ``query`` if it passes; raise ValueError saying what is wrong (never echoing the query)."""
    if not query.strip():
        raise ValueError("query is empty")
    if len(query) > max_chars:
        raise ValueError(f"query is {len(query)} characters, more than the {max_chars} allowed")
    stack: list[str] = []
    quote = ""
    i = 0
    while i < len(query):
        ch = query[i]
        if quote:
            if ch in "\r\n":
                raise ValueError(f"line break inside a string literal at offset {i}")
            if ch == "\\" and quote != "`":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in _QUOTES:
            quote = ch
        elif ch == "#":
            raise ValueError(f"comment ('#') outside a string at offset {i}")
        elif (ord(ch) < 0x20 and ch not in _WHITESPACE) or ord(ch) == 0x7F:
            raise ValueError(f"control character outside a string at offset {i}")
        elif ch in "([{":
            stack.append(ch)
        elif ch in _PAIRS and (not stack or stack.pop() != _PAIRS[ch]):
            raise ValueError(f"unbalanced {ch!r} at offset {i}")
        i += 1
    if quote:
        raise ValueError("unterminated string literal")
    if stack:
        raise ValueError(f"{len(stack)} unclosed bracket(s)")
    return query

"""Control characters in text from outside: refused at the REST edge, since Postgres cannot store NUL and
no project, feature, key or budget name has a reason to hold one."""

from __future__ import annotations


def has_control_characters(value: str) -> bool:
    """True when ``value`` holds a C0/C1 control character (NUL, ESC, DEL, ...) or a lone surrogate."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in value)

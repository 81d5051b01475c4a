"""What the kernel will exec: the script's arguments and environment as execve(2) takes them.

A NUL byte cannot be passed at all (the C strings end there), one string may be at most MAX_ARG_STRLEN
(128 KiB, its NUL included), and all of them together share the stack's argument space. A run that broke
one of these used to die at start (exit 1 with nothing said, or 127); they are refused when given instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ARG_MAX_BYTES = 128 * 1024 - 1  # MAX_ARG_STRLEN less the terminating NUL
TOTAL_MAX_BYTES = 1024 * 1024  # args and env together; Linux allows a quarter of an 8 MiB stack


def problem(args: Iterable[str] = (), env: Mapping[str, str] | None = None) -> str | None:
    """Why execve would refuse these, or None."""
    total = 0
    named = [(f"args[{i}]", a) for i, a in enumerate(args)] + [(f"env {k}", v) for k, v in (env or {}).items()]
    for where, text in named:
        if "\x00" in text:
            return f"{where} holds a NUL byte, which no program can receive"
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > ARG_MAX_BYTES:
            return f"{where} is {size} bytes; one argument or value may be at most {ARG_MAX_BYTES}"
        total += size + 1
    if total > TOTAL_MAX_BYTES:
        return f"args and env are {total} bytes together; at most {TOTAL_MAX_BYTES}"
    return None

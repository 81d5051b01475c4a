"""Runs as clients see them: submit, stop, retry and the dialects' run_and_collect (service.py), reads
and live logs (views.py), the base of every dialect service (surface.py), signed exports, a script's own
HTTP answer (responses.py) and usage.

Why apart from execution/: this is the read and command side callers use, with space visibility checked
in every method; execution/ is the engine behind it."""

"""Answer an HTTP caller from a script, and read the request that started it (the python sandbox image ships
this module; any other language writes the same files itself).

The convention the control plane reads (sandbox-images/python/runner.py sends it, never as an artifact):

    $JETQUERY_OUTPUTS/.response/status         the HTTP status, a number 200-599 (default 200)
    $JETQUERY_OUTPUTS/.response/content-type   the Content-Type (default application/octet-stream when
                                               there is a body, text/plain without one)
    $JETQUERY_OUTPUTS/.response/body           the body, bytes as they are (default empty)

With none of them written the caller gets the script's stdout as text/plain (status 200). The answer is
used when the script exits 0; a script that fails after answering still fails (the caller gets 502).

    from jetquery_response import request, respond, respond_json

    req = request()                       # method, path, query, headers, content_type, body, json()
    respond_json({"hello": req.json()["name"]}, status=201)
    respond(b"%PDF-...", content_type="application/pdf")

Standard library only.
"""

import json
import os

__all__ = ["Request", "request", "respond", "respond_json", "respond_text", "response_dir"]

_PREFIXES = ("JETQUERY_",)


def _env(name, default):
    for prefix in _PREFIXES:
        value = os.environ.get(prefix + name)
        if value:
            return value
    return default


def response_dir():
    """The directory the control plane reads the answer from (created before the script starts)."""
    return os.path.join(_env("OUTPUTS", "/work/outputs"), ".response")


def _write(name, data):
    path = os.path.join(response_dir(), name)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)  # a reader never sees half a file


def respond(body=b"", status=200, content_type=None):
    """Set the script's HTTP answer: ``body`` (bytes, or str sent as UTF-8), ``status`` (200-599) and
    ``content_type`` (default: text/plain; charset=utf-8 for str, application/octet-stream for bytes).
    Calling it again replaces the earlier answer."""
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError("status must be an int from 200 to 599, not %r" % (status,))
    if isinstance(body, str):
        body = body.encode("utf-8")
        content_type = content_type or "text/plain; charset=utf-8"
    elif isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    elif not isinstance(body, bytes):
        raise TypeError("body must be bytes or str; use respond_json for other values")
    content_type = content_type or "application/octet-stream"
    if any(ord(c) < 32 or ord(c) > 126 for c in content_type) or "/" not in content_type:
        raise ValueError("content_type must be a printable media type such as text/csv, not %r" % (content_type,))
    os.makedirs(response_dir(), exist_ok=True)
    _write("body", body)
    _write("content-type", content_type.encode("ascii"))
    _write("status", str(status).encode("ascii"))


def respond_text(text, status=200, content_type="text/plain; charset=utf-8"):
    respond(str(text), status=status, content_type=content_type)


def respond_json(value, status=200, content_type="application/json"):
    """Answer with ``value`` as JSON."""
    respond(json.dumps(value, ensure_ascii=False).encode("utf-8"), status=status, content_type=content_type)


class Request:
    """The HTTP request that started this run (scripting dialect), or an empty GET for other runs."""

    def __init__(self, doc, body):
        self.method = str(doc.get("method") or "")
        self.path = str(doc.get("path") or "")
        self.query = str(doc.get("query") or "")
        self.query_params = dict(doc.get("queryParams") or {})
        self.headers = {str(k).lower(): str(v) for k, v in (doc.get("headers") or {}).items()}
        self.content_type = doc.get("contentType")
        self.script_id = doc.get("scriptId")
        self.mode = doc.get("mode")
        self.body = body

    def text(self, encoding="utf-8"):
        return self.body.decode(encoding)

    def json(self):
        return json.loads(self.body) if self.body.strip() else None

    def __repr__(self):
        return "Request(%s %s, %d bytes)" % (self.method, self.path, len(self.body))


def request():
    """The request (method, path, query, headers minus Authorization, content type) and its body."""
    doc = {}
    try:
        with open(_env("REQUEST_FILE", "/work/request.json"), "rb") as fh:
            doc = json.loads(fh.read() or b"{}")
    except FileNotFoundError:
        pass
    try:
        with open(_env("INPUT_FILE", "/work/input"), "rb") as fh:
            body = fh.read()
    except FileNotFoundError:
        body = b""
    return Request(doc if isinstance(doc, dict) else {}, body)

"""The wire: one JSON object a line between a helper process and its client (JSON only: no format
that runs code when read crosses a process boundary).

Every helper the studio starts speaks it: the job server (``python -m studio.job_server``,
requests and replies on stdin/stdout) and the engine's time probe (``engine estimate
--time-only``, progress lines on stderr). Training runs have their own, richer contract: the
events of ``engine.events``; a wire message never has an ``event`` key, so the two never mix.

A message is a dict with a ``type`` and, when it belongs to a request, that request's ``id``:

==========  ===================================================================================
``request`` ``id``, ``job`` (a job's name), ``args`` (a list of JSON values)
``cancel``  ``id``: ask the job to stop at its next check (cooperative)
``progress``  ``status`` (a sentence, or null), ``done`` and ``total`` (counts of the same unit,
            e.g. tensors written or steps timed; either may be null when unknown)
``partial`` ``value``: a piece of a result that is still growing (e.g. generated text)
``result``  ``value``: the job's return value, a JSON value
``error``   ``message`` (plain language, complete on its own), ``error_type`` (the exception's
            class name), ``user_error`` (true when the user can fix it: a bad file, field or
            model; false for the project's own faults), ``hint`` (what to do, may be empty)
==========  ===================================================================================

Why hand-written and not e.g. JSON-RPC: the whole protocol is these six shapes, and both ends
(the engine, which may not import Qt, and the studio) need it without a dependency.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

TYPES = ("request", "cancel", "progress", "partial", "result", "error")


class WireError(ValueError):
    """A line that claims to be a wire message but is malformed (the helper's own fault)."""


def encode(message: dict) -> str:
    """One line of JSON, without the newline. Raises TypeError for a value JSON cannot carry
    (the sender's bug: jobs must return plain dicts, lists, strings and numbers)."""
    if message.get("type") not in TYPES:
        raise WireError(f"not a wire message type: {message.get('type')!r}")
    # ensure_ascii keeps every line pure ASCII: no encoding can split a message.
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"))


def decode(line: str | bytes) -> dict | None:
    """The message on one line, or None when the line is not a wire message (blank, a library's
    print, a traceback line, an engine event). Raises WireError for a broken wire message."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None  # a printed dict or a half line: not ours
    if not isinstance(obj, dict) or "event" in obj or obj.get("type") not in TYPES:
        return None
    if obj["type"] == "request" and not (isinstance(obj.get("job"), str) and isinstance(obj.get("args"), list)):
        raise WireError(f"a request needs a job name and a list of args: {text[:200]}")
    return obj


def write(stream: TextIO, message: dict) -> None:
    """Write one message and flush: the reader acts on each line as it arrives."""
    stream.write(encode(message) + "\n")
    stream.flush()


def request(id: int, job: str, args: list | tuple) -> dict:
    return {"type": "request", "id": id, "job": job, "args": list(args)}


def cancel(id: int) -> dict:
    return {"type": "cancel", "id": id}


def progress(status: str | None = None, done: float | None = None, total: float | None = None,
             id: int | None = None) -> dict:
    msg: dict[str, Any] = {"type": "progress", "status": status, "done": done, "total": total}
    if id is not None:
        msg["id"] = id
    return msg


def partial(value: Any, id: int | None = None) -> dict:
    msg: dict[str, Any] = {"type": "partial", "value": value}
    if id is not None:
        msg["id"] = id
    return msg


def result(value: Any, id: int | None = None) -> dict:
    msg: dict[str, Any] = {"type": "result", "value": value}
    if id is not None:
        msg["id"] = id
    return msg


def error(message: str, *, error_type: str = "Error", user_error: bool = False, hint: str = "",
          id: int | None = None) -> dict:
    msg: dict[str, Any] = {"type": "error", "message": message, "error_type": error_type,
                           "user_error": bool(user_error), "hint": hint or ""}
    if id is not None:
        msg["id"] = id
    return msg

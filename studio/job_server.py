"""``python -m studio.job_server``: the helper process that runs studio/jobs.py functions.

Protocol on stdin/stdout: each message is an 8-byte little-endian length and a pickle.
Request ``(job_id, name, args)``; reply ``(job_id, ok, result_or_(type_name, message))``.
Libraries that print would corrupt the stream, so the protocol gets a private copy of fd 1
and fd 1 itself is pointed at stderr.
"""

from __future__ import annotations

import os
import pickle
import sys


def _read(stream) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    n = int.from_bytes(head, "little")
    data = stream.read(n)
    return data if len(data) == n else None


def _write(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def main() -> int:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    from studio.jobs import JOBS
    from studio.messages import plain_message

    while True:
        data = _read(inp)
        if data is None:
            return 0  # the studio closed the pipe: it has exited
        job_id, name, args = pickle.loads(data)
        try:
            reply = (job_id, True, JOBS[name](*args))
        except BaseException as e:  # every failure goes back as a message; the helper lives on
            reply = (job_id, False, (type(e).__name__, plain_message(e)))
        try:
            _write(out, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            _write(out, (job_id, False, (type(e).__name__, f"result could not be sent back: {e}")))


if __name__ == "__main__":
    sys.exit(main())

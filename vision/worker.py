"""One embedding process: ``python -m vision.worker DEEPFACE_HOME``, driven by ``vision.pool`` over its stdin/stdout.

A plain child process rather than a ``multiprocessing`` pool: Sanic's workers are daemonic processes, which
``multiprocessing`` forbids to have children. The process loads the models once, then answers one request at a
time until its stdin closes (the server stopped or died: the process ends with it).

Frames, both ways: 4-byte big-endian length, then the body. Request body: one op byte (``E`` embed the photo that
follows, ``R`` ready?). Answer body: JSON — ``{"ok": true, ...embed_photo's result, vector base64}``,
``{"ok": false, "code": "no_face"}`` for a refused photo, ``{"ok": false, "error": "..."}`` for anything else.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import sys


def read_frame(stream) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (length,) = struct.unpack(">I", header)
    body = stream.read(length)
    return body if len(body) == length else None


def write_frame(stream, body: bytes) -> None:
    stream.write(struct.pack(">I", len(body)) + body)
    stream.flush()


def answer(request: bytes) -> dict:
    from vision import engine

    op, data = request[:1], request[1:]
    if op == b"R":
        return {"ok": engine.ready()}
    if op != b"E":
        return {"ok": False, "error": f"unknown op {op!r}"}
    try:
        result = engine.embed_photo(data)
    except engine.PhotoRejected as exc:
        return {"ok": False, "code": exc.code}
    except Exception as exc:  # noqa: BLE001 - reported to the server, the process keeps serving
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["vector"] = base64.b64encode(result["vector"]).decode()
    return {"ok": True, **result}


def main(deepface_home: str) -> int:
    # The protocol owns the real stdout; anything the libraries print goes to stderr instead of into the frames.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    protocol_in = sys.stdin.buffer

    from vision import engine

    engine.init_worker(deepface_home)
    while True:
        request = read_frame(protocol_in)
        if request is None:  # stdin closed: the server is gone
            return 0
        write_frame(protocol_out, json.dumps(answer(request)).encode())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Frame HTTP/1.1 request streams with h11 (an independent parser) for tests/differential.rs.

stdin: a JSON list of byte streams in hex. stdout: a JSON list, one entry per stream:
{"requests": [{"method", "target", "body" (hex)}], "error": text or null,
 "complete": whether the stream ended at a request boundary}.
"""
import json
import sys

import h11


def frame(data):
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")  # the end of the stream
    out, cur, error = [], None, None
    while True:
        try:
            ev = conn.next_event()
        except h11.RemoteProtocolError as e:
            error = str(e) or type(e).__name__
            break
        if ev is h11.NEED_DATA or ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
            break
        if isinstance(ev, h11.Request):
            cur = {"method": ev.method.decode("latin-1"),
                   "target": ev.target.decode("latin-1"), "body": b""}
        elif isinstance(ev, h11.Data):
            cur["body"] += bytes(ev.data)
        elif isinstance(ev, h11.EndOfMessage):
            cur["body"] = cur["body"].hex()
            out.append(cur)
            cur = None
            # Answer, so h11 moves on to the next pipelined request.
            try:
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                break
    return {"requests": out, "error": error, "complete": cur is None and error is None}


print(json.dumps([frame(bytes.fromhex(s)) for s in json.load(sys.stdin)]))

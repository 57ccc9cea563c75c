#!/usr/bin/env python3
"""Cache hits through roost against nginx proxy_cache, same objects, same run.

An nginx "origin" answers /obj/<size> with Cache-Control: max-age=3600 and an ETag, and
/nocache/<size> without caching headers. In front of it: roost (pool cache on) and nginx
(proxy_cache on tmpfs, proxy_cache_lock on). Both are warmed, then wrk measures, per
scenario and interleaved: req/s, p99 and the proxy's CPU us/request (from /proc). The
origin's request count must not move during hit scenarios (checked).

Coalescing: a slow origin (in this script, asyncio, 2 s per answer, counting requests
per path) behind /slow/ on both proxies; 1,000 concurrent connections ask for one new
key at once, and the origin's count for that key is reported (roost: request
coalescing; nginx: proxy_cache_lock).

    python3 benches/load/cache.py            # REPS=3 DUR=5 (about 2 min)

Needs wrk and nginx-light (apt-get install -y nginx-light wrk) and a release build
(cargo build --release --bin roost). Pins the proxy to CPU 0 and wrk/origin to CPU 1.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import asyncio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import children, cpu_ticks  # noqa: E402  (the load harness's /proc readers)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ROOST = os.environ.get("ROOST_BIN", os.path.join(ROOT, "target", "release", "roost"))
REPS = int(os.environ.get("REPS", "3"))
DUR = int(os.environ.get("DUR", "5"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
SIZES = {"5B": 5, "16KiB": 16384}
# name -> (path kind, size, connections)
SCENARIOS = [
    ("hit 5B c64", "obj", "5B", 64),
    ("hit 16KiB c64", "obj", "16KiB", 64),
    ("miss (proxied) 5B c64", "nocache", "5B", 64),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


SLOW_SECONDS = 2.0
COALESCE_CLIENTS = 1000


class SlowOrigin:
    """An HTTP/1.1 keep-alive origin that answers /slow/<key> after SLOW_SECONDS with
    max-age=3600, counting requests per path (in a thread of this script)."""

    def __init__(self):
        self.counts = {}
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self):
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", self.port, backlog=4096)

    async def _conn(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                self.counts[path] = self.counts.get(path, 0) + 1
                await asyncio.sleep(SLOW_SECONDS)
                body = b"slow " + path.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Cache-Control: max-age=3600\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _one(port, path):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    return data.startswith(b"HTTP/1.1 200")


async def _burst(port, path, n):
    return await asyncio.gather(*[_one(port, path) for _ in range(n)], return_exceptions=True)


def coalescing(port, slow, key):
    """COALESCE_CLIENTS concurrent misses on one key: (answered 200, origin requests)."""
    path = f"/slow/{key}"
    t0 = time.time()
    oks = asyncio.run(_burst(port, path, COALESCE_CLIENTS))
    took = time.time() - t0
    return sum(1 for x in oks if x is True), slow.counts.get(path, 0), took


def origin_conf(d, port):
    # Bodies are files: nginx refuses a `return` string over 4 KiB.
    os.makedirs(f"{d}/files", exist_ok=True)
    locs = []
    for name, n in SIZES.items():
        with open(f"{d}/files/{name}", "w") as f:
            f.write("x" * n)
        locs.append(f"""
        location = /obj/{name} {{
            etag off;
            add_header Cache-Control "max-age=3600";
            add_header ETag '"{name}"';
            alias {d}/files/{name};
        }}
        location = /nocache/{name} {{ etag off; add_header Last-Modified ""; alias {d}/files/{name}; }}""")
    return f"""
worker_processes 1; daemon off; pid {d}/origin.pid; error_log {d}/origin-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {d}/origin-access.log;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        {''.join(locs)}
    }}
}}
"""


def nginx_cache_conf(d, port, origin, slow):
    return f"""
worker_processes 1; daemon off; pid {d}/ngx.pid; error_log {d}/ngx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    proxy_cache_path {d}/ngx-cache levels=1:2 keys_zone=c:10m max_size=256m inactive=1h use_temp_path=off;
    client_body_temp_path {d}/ngx-body; proxy_temp_path {d}/ngx-proxy;
    upstream o {{ server 127.0.0.1:{origin}; keepalive 256; }}
    upstream slow {{ server 127.0.0.1:{slow}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://o;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache c;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
        location /slow/ {{
            proxy_pass http://slow;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache c;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
        }}
    }}
}}
"""


def roost_conf(port, admin, origin, slow):
    return f"""
sites:
  - name: bench
    bindings: [{{listen: "127.0.0.1:{port}"}}]
    applications: [{{path: /, pool: farm}}, {{path: /slow, pool: slow}}]
pools:
  slow:
    queueLength: 10000
    cache: {{maxBytes: 16MiB, lockTimeout: 10s}}
    farm:
      servers: [{{address: "127.0.0.1:{slow}", maxConcurrentRequests: 2000}}]
  farm:
    queueLength: 10000
    cache: {{maxBytes: 64MiB, maxObjectBytes: 1MiB}}
    farm:
      servers: [{{address: "127.0.0.1:{origin}", maxConcurrentRequests: 2000}}]
admin: {{listen: "127.0.0.1:{admin}"}}
"""


def wait_ready(port, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nocache/5B", timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"port {port} never answered")


def origin_requests(d, path):
    """Origin requests for `path` so far (by path: a previous run's last requests are
    still logged as it ends)."""
    try:
        with open(f"{d}/origin-access.log") as f:
            return sum(1 for line in f if f" {path} " in line)
    except OSError:
        return 0


def wrk(port, path, conns, pids):
    t0 = sum(cpu_ticks(pids))
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{DUR}s",
                          "--latency", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=DUR + 60).stdout
    t1 = sum(cpu_ticks(pids))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    return {"rps": rps, "p99_ms": p99, "cpu_us": (t1 - t0) * 1e6 / CLK_TCK / n}


def main():
    d = tempfile.mkdtemp(prefix="roost-cache-bench-", dir="/dev/shm")
    os.chmod(d, 0o755)  # nginx's workers (www-data when run as root) read the bodies
    o, n, r, a = free_port(), free_port(), free_port(), free_port()
    procs = []

    def start(name, argv, cpus):
        log = open(f"{d}/{name}.log", "w")
        p = subprocess.Popen(["taskset", "-c", cpus] + argv, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        slow = SlowOrigin()
        for name, text in [("origin.conf", origin_conf(d, o)),
                           ("ngx.conf", nginx_cache_conf(d, n, o, slow.port)),
                           ("roost.yaml", roost_conf(r, a, o, slow.port))]:
            with open(f"{d}/{name}", "w") as f:
                f.write(text)
        start("origin", ["nginx", "-c", f"{d}/origin.conf", "-p", d], "1")
        ngx = start("nginx", ["nginx", "-c", f"{d}/ngx.conf", "-p", d], "0")
        roost = start("roost", [ROOST, "serve", "-c", f"{d}/roost.yaml"], "0")
        for port in (o, n, r):
            wait_ready(port)
        targets = {"roost": (r, lambda: [roost.pid]), "nginx": (n, lambda: [ngx.pid] + children(ngx.pid))}
        for port, _ in targets.values():
            for name in SIZES:
                for _ in range(3):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/obj/{name}").read()
        results = {}
        for rep in range(REPS):
            for sc, kind, size, conns in SCENARIOS:
                for tname, (port, pids) in targets.items():
                    path = f"/{kind}/{size}"
                    before = origin_requests(d, path)
                    res = wrk(port, path, conns, pids())
                    if kind == "obj":
                        res["origin_requests"] = origin_requests(d, path) - before
                    results.setdefault((sc, tname), []).append(res)
                    print(f"rep {rep} {sc:24} {tname:6} {res}", file=sys.stderr)
        coalesced = {}
        for tname, (port, _) in targets.items():
            coalesced[tname] = coalescing(port, slow, f"{tname}-{time.time_ns()}")
            print(f"coalescing {tname}: {coalesced[tname]}", file=sys.stderr)
        report(results, coalesced)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def report(results, coalesced):
    print(f"\n{REPS} reps x {DUR}s, wrk -t1, proxy pinned to CPU 0, wrk and origin to CPU 1; medians\n")
    print("| scenario | target | req/s | p99 ms | CPU us/req | origin requests during run |")
    print("|---|---|---|---|---|---|")
    for (sc, t), rs in results.items():
        origin = max(x.get("origin_requests", 0) for x in rs) if "hit" in sc else "-"
        print(f"| {sc} | {t} | {med([x['rps'] for x in rs]):.0f} | {med([x['p99_ms'] for x in rs]):.2f} | "
              f"{med([x['cpu_us'] for x in rs]):.1f} | {origin} |")
    print()
    for sc, *_ in SCENARIOS:
        if (sc, "roost") in results and (sc, "nginx") in results:
            rr = med([x["rps"] for x in results[(sc, "roost")]])
            nr = med([x["rps"] for x in results[(sc, "nginx")]])
            print(f"- {sc}: roost/nginx req/s = {rr / nr:.2f}")
    hit = med([x["cpu_us"] for x in results[("hit 5B c64", "roost")]])
    miss = med([x["cpu_us"] for x in results[("miss (proxied) 5B c64", "roost")]])
    print(f"- roost CPU of a 5 B hit / a proxied 5 B miss = {hit / miss:.2f}")
    for t, (ok, origin, took) in coalesced.items():
        print(f"- {COALESCE_CLIENTS} concurrent misses on one key via {t}: {ok} answered 200, "
              f"{origin} origin request(s), {took:.1f} s (origin takes {SLOW_SECONDS:.0f} s)")


if __name__ == "__main__":
    main()

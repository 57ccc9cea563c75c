#!/usr/bin/env python3
"""roost load harness (started by run.sh, which installs the tools and builds roost).

Starts one shared backend (`roost worker --app demo` on TCP, pinned to BACKEND_CPUS),
roost in front of it (a farm pool), roost with its own web garden (built-in workers over
Unix sockets, moved onto BACKEND_CPUS), nginx and HAProxy in front of the same backend
(proxies pinned to PROXY_CPUS with as many workers/threads as CPUs there, which is also
what roost's runtime uses), then runs every scenario against every target, interleaved,
REPS times, and writes a markdown table of medians, spread and ratios.

Everything listens on 127.0.0.1 on ports the kernel hands out; every run is bounded in
time; every process started here is stopped at the end (also on Ctrl-C).
"""

import asyncio
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
QUICK = os.environ.get("QUICK") == "1"
REPS = int(os.environ.get("REPS", "2" if QUICK else "3"))
DUR = int(os.environ.get("DUR", "2" if QUICK else "6"))
IDLE_N = int(os.environ.get("IDLE_CONNS", "10000"))
# LAYOUT=pinned (the default here): the proxy on CPU 0, the backend on CPU 1, the load on
# CPU 0, each proxy with one worker/thread per CPU it is given.
# LAYOUT=default: what users run. Nothing is pinned (every process may use every CPU) and
# every proxy runs its documented multi-core default: nginx `worker_processes auto`,
# HAProxy `nbthread` = CPUs, roost with no `workers` key (auto). THREADS=N gives every
# proxy N workers/threads instead (the scaling runs: THREADS=1 against THREADS=2).
LAYOUT = os.environ.get("LAYOUT", "pinned")
# The machine may be shared: the load average when the run started goes into the report.
with open("/proc/loadavg") as _f:
    LOADAVG = " ".join(_f.read().split()[:3])
ALL_CPUS = f"0-{os.cpu_count() - 1}"
_DEFAULT_CPUS = {"BACKEND_CPUS": "1", "PROXY_CPUS": "0", "LOAD_CPUS": "0"}
if LAYOUT == "default":
    _DEFAULT_CPUS = {k: ALL_CPUS for k in _DEFAULT_CPUS}
elif LAYOUT != "pinned":
    raise SystemExit(f"LAYOUT={LAYOUT}: expected pinned or default")
BACKEND_CPUS = os.environ.get("BACKEND_CPUS", _DEFAULT_CPUS["BACKEND_CPUS"])
PROXY_CPUS = os.environ.get("PROXY_CPUS", _DEFAULT_CPUS["PROXY_CPUS"])
LOAD_CPUS = os.environ.get("LOAD_CPUS", _DEFAULT_CPUS["LOAD_CPUS"])
THREADS = os.environ.get("THREADS")
GARDEN_PROCESSES = int(os.environ.get("GARDEN_PROCESSES", "2"))
ROOST = os.environ.get("ROOST_BIN", os.path.join(ROOT, "target", "release", "roost"))
PLAIN = os.environ.get("PLAIN_BIN", os.path.join(ROOT, "target", "release", "examples",
                                                 "plain_hyper"))
OUT = os.environ.get("OUT", os.path.join(HERE, "results.md"))
RAW = os.environ.get("RAW", os.path.join(HERE, "results.jsonl"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_count(spec):
    n = 0
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            n += int(b) - int(a) + 1
        else:
            n += 1
    return n


PROXY_THREADS = cpu_count(PROXY_CPUS)
LOAD_THREADS = cpu_count(LOAD_CPUS)

# name -> (load tool, path, connections, h2 streams per connection, port kind)
SCENARIOS = {
    "small-c64": ("wrk", "/", 64, 0, "h1"),
    "small-c256": ("wrk", "/", 256, 0, "h1"),
    "1MiB-c8": ("wrk", "/bytes?n=1048576", 8, 0, "h1"),
    "h2-c16x16": ("h2load", "/", 16, 16, "h2"),
    "tls-c64": ("wrk", "/", 64, 0, "tls"),
}
TARGETS = ["direct", "roost", "garden", "nginx", "haproxy", "worker", "plain"]
# The worker's own overhead: `roost worker --app hello` against a plain hyper server
# (examples/plain_hyper.rs) answering the same "hello", both loaded directly, with as many
# I/O threads as the backend. Only the small-response scenarios apply to them.
HELLO_TARGETS = ("worker", "plain")
# A/B runs for optimisation work: ROOST_BEFORE_BIN=/path/to/old/roost adds the target
# "before" (the same farm config served by that binary), measured in the same run.
BEFORE_BIN = os.environ.get("ROOST_BEFORE_BIN")
if BEFORE_BIN:
    TARGETS.insert(2, "before")


def pick(env, all_items):
    want = os.environ.get(env)
    if not want:
        return list(all_items)
    names = [w.strip() for w in want.split(",") if w.strip()]
    return [n for n in all_items if n in names]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- processes -------------------------------------------------------------------------

class Procs:
    """Every process started here, stopped in reverse order at the end."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, cpus, env=None, cwd=None, logdir=None):
        out = open(os.path.join(logdir, f"{name}.log"), "wb")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen(["taskset", "-c", cpus] + argv, stdout=out, stderr=subprocess.STDOUT,
                             env=e, cwd=cwd, start_new_session=True)
        self.procs.append((name, p))
        return p

    def stop_all(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 10
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == pid:
            kids.append(int(d))
    return kids


def cpu_ticks(pids):
    """(user, system) clock ticks of the processes so far."""
    u = s = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        u += int(fields[11])  # utime
        s += int(fields[12])  # stime
    return u, s


def switches(pids):
    """Context switches (voluntary + involuntary) of every thread of the processes so
    far: a proxy that sleeps and wakes more per request pays for it in the kernel."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches:",
                                            "nonvoluntary_ctxt_switches:")):
                            total += int(line.split()[1])
            except OSError:
                pass
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def http_ok(port, path="/", timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_ready(port, what, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}; see its log")
        if http_ok(port):
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not answer on port {port} within {seconds}s")


def render(template, dest, values):
    with open(os.path.join(HERE, template)) as f:
        text = string.Template(f.read()).safe_substitute(values)
    with open(dest, "w") as f:
        f.write(text)
    return dest


# --- load tools ------------------------------------------------------------------------

def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    if not m:
        return None
    x = float(m.group(1))
    return {"us": x / 1000, "ms": x, "s": x * 1000}[m.group(2)]


def parse_wrk(out):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    for q, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            r[key] = to_ms(m.group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    r["errors"] = errors
    return r


def parse_h2load(out):
    r = {}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if m:
        r["requests"] = int(m.group(2))
        r["errors"] = int(m.group(4)) + int(m.group(5)) + int(m.group(6))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        r["mean_ms"] = to_ms(m.group(3))
    m = re.search(r"status codes: (\d+) 2xx", out)
    if m and "requests" in r:
        r["errors"] = r.get("errors", 0) + max(0, r["requests"] - int(m.group(1)))
    return r


def load_argv(scenario, port, secs):
    tool, path, conns, streams, kind = SCENARIOS[scenario]
    scheme = "https" if kind == "tls" else "http"
    url = f"{scheme}://127.0.0.1:{port}{path}"
    if tool == "wrk":
        return ["wrk", f"-t{LOAD_THREADS}", f"-c{conns}", f"-d{secs}s", "--latency",
                "-H", "Host: bench", url]
    # No Host header for h2: `:authority` carries it, and nginx refuses both at once.
    return ["h2load", f"-t{LOAD_THREADS}", f"-c{conns}", f"-m{streams}", "-D", str(secs), url]


def run_load(scenario, port, secs, cpu_pids):
    argv = ["taskset", "-c", LOAD_CPUS] + load_argv(scenario, port, secs)
    t0 = cpu_ticks(cpu_pids)
    s0 = switches(cpu_pids)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60).stdout
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    t1 = cpu_ticks(cpu_pids)
    s1 = switches(cpu_pids)
    tool = SCENARIOS[scenario][0]
    r = parse_wrk(out) if tool == "wrk" else parse_h2load(out)
    if r.get("requests"):
        per_req = 1e6 / CLK_TCK / r["requests"]
        r["cpu_user_us_per_req"] = (t1[0] - t0[0]) * per_req
        r["cpu_sys_us_per_req"] = (t1[1] - t0[1]) * per_req
        r["cpu_us_per_req"] = r["cpu_user_us_per_req"] + r["cpu_sys_us_per_req"]
        r["switches_per_req"] = (s1 - s0) / r["requests"]
    if "rps" not in r:
        r["error"] = "no result"
        r["output"] = out[-500:]
    if scenario.startswith("1MiB") and "rps" in r:
        r["mibps"] = r["rps"]  # one MiB per response
    return r


# --- idle connections ------------------------------------------------------------------

async def open_idle(port, n):
    """Open n keep-alive connections, one request each, and keep them."""
    sem = asyncio.Semaphore(256)
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"

    async def one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
                w.write(req)
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                if m:
                    await asyncio.wait_for(r.readexactly(int(m.group(1))), 10)
                return w if head.startswith(b"HTTP/1.1 200") else None
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                return None

    return await asyncio.gather(*(one() for _ in range(n)))


def idle_test(port, pids_fn, n):
    async def go():
        pids = pids_fn()
        before = rss_kib(pids)
        t = time.time()
        writers = await open_idle(port, n)
        ok = [w for w in writers if w is not None]
        await asyncio.sleep(1.0)
        # Still open? A server that closed idle connections early would show here.
        after = rss_kib(pids_fn())
        took = time.time() - t
        for w in writers:
            if w is not None:
                w.close()
        return {"conns": len(ok), "rss_before_kib": before, "rss_after_kib": after,
                "kib_per_conn": (after - before) / max(1, len(ok)), "open_secs": took}
    return asyncio.run(go())


# --- report ----------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def tool_version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB"


def report(rows, idle, started):
    by = {}
    for r in rows:
        by.setdefault((r["scenario"], r["target"]), []).append(r)

    def m(sc, tg, key):
        return med([x[key] for x in by.get((sc, tg), []) if x.get(key) is not None])

    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    lines = []
    lines.append(f"Run {started:%Y-%m-%d %H:%M} UTC, roost {rev}{'+dirty' if dirty else ''}, "
                 f"{machine()}. {'QUICK, ' if QUICK else ''}{REPS} interleaved repetitions "
                 f"of {DUR} s per cell; medians, spread = (max-min)/median.")
    threads = THREADS or ("each proxy's default: nginx auto, HAProxy nbthread "
                          f"{PROXY_THREADS}, roost auto" if LAYOUT == "default"
                          else PROXY_THREADS)
    lines.append(f"Layout {LAYOUT}. CPUs: backend {BACKEND_CPUS}; proxy {PROXY_CPUS} "
                 f"(workers/threads: {threads}); load generator {LOAD_CPUS} "
                 f"(wrk/h2load -t{LOAD_THREADS}). Load average at the start: {LOADAVG}.")
    lines.append("")
    lines.append("| scenario | target | req/s | spread | p50 ms | p99 ms | CPU µs/req | user | sys | "
                 "ctx sw/req | errors |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sc in SCENARIOS:
        for tg in TARGETS:
            xs = by.get((sc, tg))
            if not xs:
                continue
            rps = [x["rps"] for x in xs if x.get("rps")]
            spread = (max(rps) - min(rps)) / med(rps) * 100 if len(rps) > 1 else None
            p50 = m(sc, tg, "p50_ms")
            mean = m(sc, tg, "mean_ms")
            p50s = fmt(p50, 3) if p50 is not None else (f"mean {fmt(mean, 3)}" if mean else "–")
            errs = sum(x.get("errors", 0) for x in xs)
            failed = sum(1 for x in xs if x.get("error"))
            e = f"{errs}" + (f" ({failed} runs failed)" if failed else "")
            unit = " MiB/s" if sc.startswith("1MiB") else ""
            lines.append(f"| {sc} | {tg} | {fmt(med(rps))}{unit} | "
                         f"{fmt(spread, 0) + '%' if spread is not None else '–'} | {p50s} | "
                         f"{fmt(m(sc, tg, 'p99_ms'), 3)} | {fmt(m(sc, tg, 'cpu_us_per_req'), 1)} | "
                         f"{fmt(m(sc, tg, 'cpu_user_us_per_req'), 1)} | {fmt(m(sc, tg, 'cpu_sys_us_per_req'), 1)} | "
                         f"{fmt(m(sc, tg, 'switches_per_req'), 2)} | {e} |")
    lines.append("")
    lines.append("Ratios (medians; req/s: higher is better for roost, p99 and CPU: lower is better):")
    lines.append("")
    lines.append("| scenario | req/s roost/nginx | req/s roost/haproxy | req/s roost/direct | "
                 "req/s garden/nginx | p99 roost/nginx | p99 roost/haproxy | "
                 "CPU roost/nginx | CPU roost/haproxy |" + (" req/s roost/before | CPU roost/before |" if BEFORE_BIN else ""))
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if BEFORE_BIN else ""))
    for sc in SCENARIOS:
        if not any((sc, t) in by for t in TARGETS):
            continue
        lines.append(
            f"| {sc} | {ratio(m(sc, 'roost', 'rps'), m(sc, 'nginx', 'rps'))} | "
            f"{ratio(m(sc, 'roost', 'rps'), m(sc, 'haproxy', 'rps'))} | "
            f"{ratio(m(sc, 'roost', 'rps'), m(sc, 'direct', 'rps'))} | "
            f"{ratio(m(sc, 'garden', 'rps'), m(sc, 'nginx', 'rps'))} | "
            f"{ratio(m(sc, 'roost', 'p99_ms'), m(sc, 'nginx', 'p99_ms'))} | "
            f"{ratio(m(sc, 'roost', 'p99_ms'), m(sc, 'haproxy', 'p99_ms'))} | "
            f"{ratio(m(sc, 'roost', 'cpu_us_per_req'), m(sc, 'nginx', 'cpu_us_per_req'))} | "
            f"{ratio(m(sc, 'roost', 'cpu_us_per_req'), m(sc, 'haproxy', 'cpu_us_per_req'))} |"
            + (f" {ratio(m(sc, 'roost', 'rps'), m(sc, 'before', 'rps'))} | "
               f"{ratio(m(sc, 'roost', 'cpu_us_per_req'), m(sc, 'before', 'cpu_us_per_req'))} |"
               if BEFORE_BIN else ""))
    lines.extend(paired_table(by))
    if idle:
        lines.append("")
        lines.append(f"Idle keep-alive connections (one request each, then held; VmRSS of the "
                     f"serving process(es) before/after):")
        lines.append("")
        lines.append("| target | connections held | RSS before MiB | RSS after MiB | KiB per connection |")
        lines.append("|---|---:|---:|---:|---:|")
        for tg in TARGETS:
            r = idle.get(tg)
            if r:
                lines.append(f"| {tg} | {r['conns']:,} | {r['rss_before_kib'] / 1024:.1f} | "
                             f"{r['rss_after_kib'] / 1024:.1f} | {r['kib_per_conn']:.1f} |")
    lines.append("")
    lines.append("Versions: " + "; ".join([
        tool_version(["wrk", "-v"]).split(" Copyright")[0],
        tool_version(["h2load", "--version"]),
        tool_version(["nginx", "-v"]),
        tool_version(["haproxy", "-v"]).split(" - ")[0],
        tool_version(["rustc", "--version"]),
    ]))
    return "\n".join(lines) + "\n"


def paired(by, sc, a, b, key):
    """Ratios a/b of `key` within each repetition: the two ran minutes apart at most, so a
    drift of the machine over the whole run (which medians of each target keep) cancels."""
    xs = {r["rep"]: r.get(key) for r in by.get((sc, a), [])}
    ys = {r["rep"]: r.get(key) for r in by.get((sc, b), [])}
    return [xs[k] / ys[k] for k in sorted(xs) if xs[k] and ys.get(k)]


def paired_table(by):
    pairs = [(a, b) for a, b in (("roost", "nginx"), ("roost", "haproxy"), ("roost", "before"))
             if any(k[1] == a for k in by) and any(k[1] == b for k in by)]
    if not pairs:
        return []

    def cell(rs):
        return f"{med(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})" if rs else "–"

    lines = ["", "Paired ratios (each repetition's a/b, then their median and range):", ""]
    head = " | ".join(f"req/s {a}/{b} | CPU {a}/{b}" for a, b in pairs)
    lines.append(f"| scenario | {head} |")
    lines.append("|---|" + "---:|" * (2 * len(pairs)))
    for sc in SCENARIOS:
        cells = []
        for a, b in pairs:
            cells.append(cell(paired(by, sc, a, b, "rps")))
            cells.append(cell(paired(by, sc, a, b, "cpu_us_per_req")))
        if any(c != "–" for c in cells):
            lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    return lines


# --- main ------------------------------------------------------------------------------

def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    scenarios = pick("SCENARIOS", SCENARIOS)
    targets = pick("TARGETS", TARGETS)
    if not os.path.exists(ROOST):
        raise SystemExit(f"{ROOST} missing: build with cargo build --release (run.sh does)")

    run_dir = tempfile.mkdtemp(prefix="roost-load-")
    for d in ("nginx-body", "nginx-proxy"):
        os.makedirs(os.path.join(run_dir, d))
    cert = os.path.join(ROOT, "certs", "dev.crt")
    key = os.path.join(ROOT, "certs", "dev.key")
    with open(os.path.join(run_dir, "dev.pem"), "w") as f:
        f.write(open(cert).read() + open(key).read())
    v = {k: free_port() for k in ("BACKEND_PORT", "ROOST_PORT", "ROOST_TLS_PORT",
                                  "ROOST_ADMIN_PORT", "GARDEN_PORT", "GARDEN_ADMIN_PORT",
                                  "NGINX_PORT", "NGINX_H2_PORT", "NGINX_TLS_PORT",
                                  "HAPROXY_PORT", "HAPROXY_H2_PORT", "HAPROXY_TLS_PORT",
                                  "BEFORE_PORT", "BEFORE_TLS_PORT", "BEFORE_ADMIN_PORT")}
    v.update(RUN_DIR=run_dir, CERT=cert, KEY=key, PROXY_THREADS=THREADS or PROXY_THREADS,
             GARDEN_PROCESSES=GARDEN_PROCESSES,
             NGINX_WORKERS=THREADS or ("auto" if LAYOUT == "default" else PROXY_THREADS),
             # roost's default is `workers: auto` (the CPUs in its affinity mask).
             ROOST_WORKERS=f"workers: {THREADS}" if THREADS else "# workers: auto")
    log(f"layout {LAYOUT}: proxy cpus {PROXY_CPUS}, backend cpus {BACKEND_CPUS}, "
        f"load cpus {LOAD_CPUS}, threads {THREADS or 'each proxy default'}")
    log(f"run dir {run_dir}; {REPS} reps x {DUR}s; scenarios {scenarios}; targets {targets}")

    procs = Procs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        backend_threads = cpu_count(BACKEND_CPUS)
        backend = procs.start("backend", [ROOST, "worker", "--app", "demo", "--listen",
                                          f"tcp:127.0.0.1:{v['BACKEND_PORT']}",
                                          "--io-threads", str(backend_threads)],
                              BACKEND_CPUS, env={"RUST_LOG": "warn"}, logdir=run_dir)
        wait_ready(v["BACKEND_PORT"], "backend", backend)
        env = {"RUST_LOG": "warn"}
        pids = {"direct": lambda: [backend.pid]}
        ports = {"direct": {"h1": v["BACKEND_PORT"], "h2": v["BACKEND_PORT"]}}
        if "roost" in targets:
            cfg = render("roost-farm.yaml.tmpl", os.path.join(run_dir, "farm.yaml"), v)
            p = procs.start("roost", [ROOST, "serve", "-c", cfg], PROXY_CPUS, env=env,
                            logdir=run_dir)
            wait_ready(v["ROOST_PORT"], "roost", p)
            pids["roost"] = lambda p=p: [p.pid]
            ports["roost"] = {"h1": v["ROOST_PORT"], "h2": v["ROOST_PORT"],
                              "tls": v["ROOST_TLS_PORT"]}
        if "before" in targets:
            bv = dict(v, ROOST_PORT=v["BEFORE_PORT"], ROOST_TLS_PORT=v["BEFORE_TLS_PORT"],
                      ROOST_ADMIN_PORT=v["BEFORE_ADMIN_PORT"])
            cfg = render("roost-farm.yaml.tmpl", os.path.join(run_dir, "before.yaml"), bv)
            p = procs.start("before", [BEFORE_BIN, "serve", "-c", cfg], PROXY_CPUS, env=env,
                            logdir=run_dir)
            wait_ready(v["BEFORE_PORT"], "roost (before)", p)
            pids["before"] = lambda p=p: [p.pid]
            ports["before"] = {"h1": v["BEFORE_PORT"], "h2": v["BEFORE_PORT"],
                               "tls": v["BEFORE_TLS_PORT"]}
        if "garden" in targets:
            cfg = render("roost-garden.yaml.tmpl", os.path.join(run_dir, "garden.yaml"), v)
            p = procs.start("garden", [ROOST, "serve", "-c", cfg], PROXY_CPUS, env=env,
                            logdir=run_dir)
            wait_ready(v["GARDEN_PORT"], "roost garden", p)
            deadline = time.time() + 30
            while len(children(p.pid)) < GARDEN_PROCESSES and time.time() < deadline:
                time.sleep(0.1)
            for kid in children(p.pid):
                subprocess.run(["taskset", "-a", "-p", "-c", BACKEND_CPUS, str(kid)],
                               capture_output=True)
            pids["garden"] = lambda p=p: [p.pid]
            ports["garden"] = {"h1": v["GARDEN_PORT"], "h2": v["GARDEN_PORT"]}
        if "worker" in targets:
            port = free_port()
            p = procs.start("worker", [ROOST, "worker", "--app", "hello", "--listen",
                                       f"tcp:127.0.0.1:{port}", "--io-threads",
                                       str(backend_threads)],
                            BACKEND_CPUS, env={"RUST_LOG": "warn"}, logdir=run_dir)
            wait_ready(port, "worker", p)
            pids["worker"] = lambda p=p: [p.pid]
            ports["worker"] = {"h1": port}
        if "plain" in targets:
            if not os.path.exists(PLAIN):
                raise SystemExit(f"{PLAIN} missing: cargo build --release --example plain_hyper")
            port = free_port()
            p = procs.start("plain", [PLAIN, f"127.0.0.1:{port}", str(backend_threads)],
                            BACKEND_CPUS, logdir=run_dir)
            wait_ready(port, "plain", p)
            pids["plain"] = lambda p=p: [p.pid]
            ports["plain"] = {"h1": port}
        if "nginx" in targets:
            cfg = render("nginx.conf.tmpl", os.path.join(run_dir, "nginx.conf"), v)
            p = procs.start("nginx", ["nginx", "-p", run_dir, "-e", "stderr", "-c", cfg],
                            PROXY_CPUS, logdir=run_dir)
            wait_ready(v["NGINX_PORT"], "nginx", p)
            pids["nginx"] = lambda p=p: [p.pid] + children(p.pid)
            ports["nginx"] = {"h1": v["NGINX_PORT"], "h2": v["NGINX_H2_PORT"],
                              "tls": v["NGINX_TLS_PORT"]}
        if "haproxy" in targets:
            cfg = render("haproxy.cfg.tmpl", os.path.join(run_dir, "haproxy.cfg"), v)
            p = procs.start("haproxy", ["haproxy", "-db", "-f", cfg], PROXY_CPUS,
                            logdir=run_dir)
            wait_ready(v["HAPROXY_PORT"], "haproxy", p)
            pids["haproxy"] = lambda p=p: [p.pid] + children(p.pid)
            ports["haproxy"] = {"h1": v["HAPROXY_PORT"], "h2": v["HAPROXY_H2_PORT"],
                                "tls": v["HAPROXY_TLS_PORT"]}
        targets = [t for t in targets if t in ports]

        # Idle connections first, on fresh processes (after a short warm-up), so the
        # allocator has not already been grown by the load runs.
        for t in targets:
            run_load("small-c64", ports[t]["h1"], 1, [])
        idle = {}
        if os.environ.get("SKIP_IDLE") != "1":
            for t in targets:
                r = idle_test(ports[t]["h1"], pids[t], IDLE_N)
                log(f"idle {t}: {r}")
                idle[t] = r
                time.sleep(1.0)

        rows = []
        with open(RAW, "a") as raw:
            for rep in range(REPS):
                for sc in scenarios:
                    kind = SCENARIOS[sc][4]
                    order = [t for t in targets if kind in ports[t]
                             and not (t in HELLO_TARGETS and not sc.startswith("small"))]
                    # Rotate the order each repetition so no target always runs first.
                    k = rep % max(1, len(order))
                    order = order[k:] + order[:k]
                    for t in order:
                        r = run_load(sc, ports[t][kind], DUR, pids[t]())
                        r.update(scenario=sc, target=t, rep=rep, at=started.isoformat())
                        rows.append(r)
                        raw.write(json.dumps(r) + "\n")
                        log(f"rep {rep} {sc:12} {t:8} rps={fmt(r.get('rps'))} "
                            f"p99={r.get('p99_ms')} cpu={fmt(r.get('cpu_us_per_req'), 1)}us "
                            f"err={r.get('errors')} {r.get('error', '')}")
        text = report(rows, idle, started)
        print(text)
        with open(OUT, "w") as f:
            f.write(text)
        log(f"written {OUT}")
    except BaseException:
        log(f"failed; logs kept in {run_dir}")
        procs.stop_all()
        raise
    procs.stop_all()
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

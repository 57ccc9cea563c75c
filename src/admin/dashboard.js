// roost dashboard: polls /api/v1/stats once a second and draws SVG line charts.
// No framework, no build step, nothing fetched from outside the admin listener.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const COLORS = { blue: "#2563eb", red: "#dc2626", green: "#16a34a", amber: "#d97706", violet: "#7c3aed", gray: "#6b7280" };
  const SVGNS = "http://www.w3.org/2000/svg";

  // A test hook: how many updates were drawn, how many points each chart got, last error.
  const hook = { updates: 0, points: {}, lastError: null, actions: [], last: null };
  window.roostDashboard = hook;

  // The series kept in the page: the first poll brings the server's history (two
  // minutes), later ones only the points after `since`.
  const KEEP_MS = 120000;
  const store = { pools: {}, workers: {}, since: null };
  hook.store = store;

  function merge(map, key, item, meta) {
    const e = map[key] || (map[key] = { points: [] });
    Object.assign(e, meta);
    for (const p of item.points) e.points.push(p);
    const last = e.points.length ? e.points[e.points.length - 1].t : 0;
    while (e.points.length && e.points[0].t < last - KEEP_MS) e.points.shift();
    return e;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // One chart: several series of [t, value] drawn as polylines on a shared y scale.
  function chart(parent, id, title, series, unit) {
    let box = document.getElementById(id);
    if (!box) {
      box = el("div", { class: "chart", id: id });
      const t = el("div", { class: "title" });
      t.appendChild(el("span", { class: "name" }, title));
      const lg = el("span", { class: "legend" });
      t.appendChild(lg);
      box.appendChild(t);
      const svg = document.createElementNS(SVGNS, "svg");
      svg.setAttribute("viewBox", "0 0 300 70");
      svg.setAttribute("preserveAspectRatio", "none");
      box.appendChild(svg);
      parent.appendChild(box);
    }
    const svg = box.querySelector("svg");
    const lg = box.querySelector(".legend");
    let max = 0, tmin = Infinity, tmax = -Infinity, n = 0;
    for (const s of series) for (const [t, v] of s.points) {
      if (v == null) continue;
      max = Math.max(max, v); tmin = Math.min(tmin, t); tmax = Math.max(tmax, t); n++;
    }
    if (max <= 0) max = 1;
    const span = Math.max(tmax - tmin, 1);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    lg.textContent = "";
    box.querySelector(".name").textContent = title + " (max " + fmt(n ? max : null, unit) + ")";
    for (const s of series) {
      const pts = s.points.filter(p => p[1] != null)
        .map(([t, v]) => ((t - tmin) / span * 300).toFixed(1) + "," + (68 - v / max * 64).toFixed(1));
      const line = document.createElementNS(SVGNS, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", s.color);
      line.setAttribute("stroke-width", "1.5");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(line);
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      const item = el("span");
      item.appendChild(el("i", { style: "background:" + s.color }));
      item.appendChild(document.createTextNode(s.name + " " + fmt(last, unit)));
      lg.appendChild(item);
    }
    hook.points[id] = n;
  }

  function fmt(v, unit) {
    if (v == null) return "–";
    if (unit === "ms") return v < 10 ? v.toFixed(2) + "ms" : v.toFixed(0) + "ms";
    if (unit === "/s") return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + "/s";
    return String(Math.round(v * 10) / 10);
  }

  function safeId(s) { return String(s).replace(/[^A-Za-z0-9_-]/g, "_"); }

  async function act(pool, action, msg) {
    msg.textContent = action + "…";
    try {
      const r = await fetch("api/v1/pools/" + encodeURIComponent(pool) + "/" + action, { method: "POST", headers });
      const body = await r.json();
      msg.textContent = r.ok ? action + ": ok (" + body.state + ")" : action + ": " + body.error;
      hook.actions.push({ pool: pool, action: action, ok: r.ok });
    } catch (e) {
      msg.textContent = action + " failed: " + e;
      hook.lastError = String(e);
    }
  }

  function poolCard(p) {
    const id = "pool-" + safeId(p.name);
    let card = document.getElementById(id);
    if (!card) {
      card = el("div", { class: "card", id: id });
      const h = el("h3");
      h.appendChild(el("span", {}, p.name));
      h.appendChild(el("span", { class: "badge state" }));
      h.appendChild(el("span", { class: "muted kind" }));
      const actions = el("span", { class: "actions" });
      const msg = el("div", { class: "msg" });
      for (const a of ["recycle", "stop", "start"]) {
        const b = el("button", { "data-pool": p.name, "data-action": a, id: id + "-" + a }, a);
        b.addEventListener("click", () => {
          // Stopping refuses every request of the pool (503): ask first.
          if (a === "stop" && !window.confirm("Stop pool " + p.name + "? Its requests get 503 until it is started again.")) return;
          act(p.name, a, msg);
        });
        actions.appendChild(b);
      }
      h.appendChild(actions);
      card.appendChild(h);
      card.appendChild(el("div", { class: "charts" }));
      card.appendChild(el("div", { class: "recycles muted" }));
      card.appendChild(msg);
      document.getElementById("pools").appendChild(card);
    }
    const badge = card.querySelector(".state");
    badge.textContent = p.state || "?";
    badge.className = "badge state " + (p.state || "");
    // The buttons follow the pool's state: a stopped pool can only be started.
    const stopped = p.state === "Stopped" || p.state === "AppOffline";
    const btn = (a) => card.querySelector('[data-action="' + a + '"]');
    btn("start").disabled = !stopped;
    btn("stop").disabled = p.state === "Stopped";
    btn("recycle").disabled = stopped;
    card.querySelector(".kind").textContent = p.kind || "";
    const charts = card.querySelector(".charts");
    const pts = p.points;
    const s = (f) => pts.map(x => [x.t, f(x)]);
    chart(charts, id + "-queue", "queue length", [{ name: "queued", color: COLORS.amber, points: s(x => x.queue) }]);
    chart(charts, id + "-rate", "arrivals / rejections", [
      { name: "arrivals", color: COLORS.blue, points: s(x => x.arrivals_per_s) },
      { name: "rejected", color: COLORS.red, points: s(x => x.rejected_per_s) }], "/s");
    chart(charts, id + "-active", "active requests", [
      { name: "active", color: COLORS.green, points: s(x => x.active) },
      { name: "capacity", color: COLORS.gray, points: s(x => x.capacity) }]);
    chart(charts, id + "-latency", "latency", [
      { name: "p50", color: COLORS.blue, points: s(x => x.p50_ms) },
      { name: "p99", color: COLORS.violet, points: s(x => x.p99_ms) }], "ms");
  }

  function workerCard(w) {
    const id = "worker-" + safeId(w.pid);
    let card = document.getElementById(id);
    if (!w.alive) { if (card) card.remove(); return; }
    if (!card) {
      card = el("div", { class: "card", id: id });
      card.appendChild(el("h3", {}, "pid " + w.pid + " · " + w.pool));
      card.appendChild(el("div", { class: "charts" }));
      document.getElementById("workers").appendChild(card);
    }
    const charts = card.querySelector(".charts");
    const s = (f) => w.points.map(x => [x.t, f(x)]);
    chart(charts, id + "-threads", "worker threads", [
      { name: "threads", color: COLORS.blue, points: s(x => x.threads) },
      { name: "goal", color: COLORS.amber, points: s(x => x.goal) },
      { name: "busy", color: COLORS.green, points: s(x => x.busy) }]);
    // Injections per second, from the cumulative counter.
    const inj = w.points.map((x, i) => {
      const prev = w.points[i - 1];
      const dt = prev ? (x.t - prev.t) / 1000 : 0;
      return [x.t, prev && dt > 0 ? (x.injections - prev.injections) / dt : 0];
    });
    chart(charts, id + "-inj", "thread injections", [{ name: "injections", color: COLORS.violet, points: inj }], "/s");
    chart(charts, id + "-queued", "queued in worker / CPU %", [
      { name: "queued", color: COLORS.amber, points: s(x => x.queued) },
      { name: "cpu%", color: COLORS.red, points: s(x => x.cpu_percent) }]);
  }

  function requests(rows) {
    const tb = document.querySelector("#requests tbody");
    tb.textContent = "";
    document.getElementById("req-count").textContent = "(" + rows.length + ")";
    for (const r of rows.slice(0, 100)) {
      const tr = el("tr");
      for (const v of [r.id, r.pool, r.worker_pid == null ? "–" : r.worker_pid, r.state, r.elapsed_ms + " ms", r.method]) tr.appendChild(el("td", {}, String(v)));
      tr.appendChild(el("td", { class: "url" }, r.url));
      tb.appendChild(tr);
    }
  }

  function age(unixSeconds) {
    if (unixSeconds == null) return "";
    const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
    return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
  }

  // A farm pool's servers: state, latency (EWMA), in flight, ejections, health checks.
  function servers(card, p) {
    let box = card.querySelector(".servers");
    if (!p.servers || !p.servers.length || p.kind !== "farm") { if (box) box.remove(); return; }
    if (!box) {
      box = el("table", { class: "servers" });
      const head = el("tr");
      for (const h of ["server", "state", "latency", "in flight", "served", "failed", "ejections", "health check"]) head.appendChild(el("th", {}, h));
      box.appendChild(el("thead")).appendChild(head);
      box.appendChild(el("tbody"));
      card.insertBefore(box, card.querySelector(".charts"));
    }
    const tb = box.querySelector("tbody");
    tb.textContent = "";
    for (const s of p.servers) {
      const tr = el("tr", { "data-server": s.server, class: "server " + (s.state || "") });
      let state = s.state || (s.healthy ? "healthy" : "unhealthy");
      if (s.state === "ejected") state += " (" + Math.round(s.ejected_for_seconds) + " s left)";
      else if (s.failure_streak) state += " (" + s.failure_streak + "/" + s.ejection_threshold + " failures in a row)";
      const check = s.last_check ? (s.last_check.ok ? "ok " : "failed ") + s.last_check.detail + ", " + age(s.last_check.at) : "not checked";
      const cells = [s.server, state, fmt(s.latency_ewma_ms || null, "ms"),
        s.active + "/" + (s.effective_slots != null ? s.effective_slots : s.slots),
        s.served != null ? s.served : s.requests, s.failed, s.ejections != null ? s.ejections : "–", check];
      for (const c of cells) tr.appendChild(el("td", {}, String(c)));
      tb.appendChild(tr);
    }
  }

  // Recycles by reason (a recycle from the dashboard or `roost ctl recycle` is `manual`).
  function recycles(card, p) {
    const line = card.querySelector(".recycles");
    const total = p.recycles_total || {};
    const parts = Object.keys(total).filter(k => total[k] > 0).map(k => k + " ×" + total[k]);
    const last = (p.recycle_history || [])[(p.recycle_history || []).length - 1];
    line.textContent = parts.length ? "recycles: " + parts.join(", ") +
      (last ? " · last " + last.at + " (" + last.reason + ")" : "") : "";
  }

  // The queue discipline's state and its sheds by cause (issue 17).
  function discipline(card, p) {
    let box = card.querySelector(".discipline");
    if (!box) {
      box = el("div", { class: "discipline" });
      card.insertBefore(box, card.querySelector(".charts"));
    }
    const q = p.queue_state || {};
    const sheds = Object.entries(q.sheds || {}).filter(e => e[1] > 0);
    const total = sheds.reduce((a, e) => a + e[1], 0);
    const shedding = p.shedding_seconds != null;
    let text = "queue " + (p.queue_discipline || "fifo") + ": ";
    if (shedding) {
      text += "shedding for " + Math.round(p.shedding_seconds) + " s";
      const t = q.trigger;
      if (t) text += " (min wait " + (t.min_wait_ms == null ? "—" : Math.round(t.min_wait_ms)) + " ms over " + Math.round(t.interval_ms) + " ms, target " + Math.round(t.target_ms) + " ms)";
    } else {
      text += "not shedding";
    }
    text += " · shed " + total + (total ? " (" + sheds.map(e => e[0] + " " + e[1]).join(", ") + ")" : "");
    if (q.classes && q.classes.length) text += " · queued by class: " + q.classes.map(c => c.name + " " + c.queued).join(", ");
    if (q.flows) text += " · " + q.flows + " fair sub-queues";
    const o = p.ordering;
    if (o) text += " · ordered by " + o.key + ": " + o.keys + " keys, " + o.waiting + " waiting";
    box.textContent = text;
    box.className = "discipline " + (shedding ? "shedding" : "muted");
  }

  // Per-pool details the charts do not carry (GET /api/v1/pools).
  async function poolDetails() {
    try {
      const r = await fetch("api/v1/pools", { headers, cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const d = await r.json();
      for (const p of d.pools) {
        const card = document.getElementById("pool-" + safeId(p.name));
        if (!card) continue;
        servers(card, p);
        recycles(card, p);
        discipline(card, p);
      }
      hook.details = (hook.details || 0) + 1;
    } catch (e) {
      hook.lastError = String(e);
    }
  }

  // The newest evidence snapshot (written when a critical finding sets in).
  async function snapshot(list) {
    const box = document.getElementById("snapshot");
    const latest = list && list.snapshots && list.snapshots[0];
    if (!latest) {
      box.textContent = list && list.dir ? "No evidence snapshot yet (" + list.dir + ")." : "";
      if (list && list.last_error) box.textContent += " Last write failed: " + list.last_error;
      box.removeAttribute("data-id");
      return;
    }
    if (box.getAttribute("data-id") === latest.id) return;
    const r = await fetch("api/v1/diagnose/snapshots/" + encodeURIComponent(latest.id), { headers, cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const s = await r.json();
    box.textContent = "";
    box.setAttribute("data-id", latest.id);
    const d = el("details");
    d.appendChild(el("summary", {}, "Latest evidence snapshot: " + new Date(s.at_unix_ms).toLocaleString() +
      " · " + s.trigger.pool + ": " + s.trigger.title + " (" + list.dir + "/" + latest.id + ".json, " + list.snapshots.length + " kept)"));
    const ul = el("ul", { class: "evidence" });
    const longest = s.requests.rows[0];
    ul.appendChild(el("li", {}, s.requests.count + " requests in flight" +
      (longest ? "; longest " + longest.route + " " + longest.state + " for " + longest.elapsed_ms + " ms" : "")));
    for (const w of s.workers) {
      const st = Object.keys(w.thread_states).map(k => k + " " + w.thread_states[k]).join(", ");
      const routes = (w.busy_routes || []).map(r => r.route + " ×" + r.threads).join(", ");
      ul.appendChild(el("li", {}, "worker " + w.pid + " (" + w.pool + "): threads " + st + (routes ? "; busy on " + routes : "")));
    }
    for (const p of s.pools) ul.appendChild(el("li", {}, "pool " + p.name + ": queue " + p.queue.length + "/" + p.queue.limit + ", active " + p.active + "/" + p.capacity));
    if (s.cpu.machine_busy != null) ul.appendChild(el("li", {}, "machine CPU " + Math.round(s.cpu.machine_busy * 100) + " % of " + s.cpu.machine_cores + " cores"));
    d.appendChild(ul);
    box.appendChild(d);
    hook.snapshot = latest.id;
  }

  // The diagnosis rules (GET /api/v1/diagnose), refreshed every few seconds.
  async function diagnose() {
    try {
      const r = await fetch("api/v1/diagnose", { headers, cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const d = await r.json();
      const box = document.getElementById("findings");
      box.textContent = "";
      document.getElementById("diag-note").textContent =
        d.findings.length ? "" : "(no problems in the last " + Math.round(d.window_seconds) + " s)";
      for (const f of d.findings) {
        const div = el("div", { class: "finding " + f.severity, "data-rule": f.rule });
        div.appendChild(el("strong", {}, f.severity.toUpperCase() + " · " + f.pool + ": "));
        div.appendChild(document.createTextNode(f.title));
        const ul = el("ul", { class: "evidence" });
        for (const e of f.evidence) ul.appendChild(el("li", {}, e));
        div.appendChild(ul);
        div.appendChild(el("div", { class: "advice" }, f.advice));
        box.appendChild(div);
      }
      hook.findings = d.findings.length;
      await snapshot(d.snapshots);
    } catch (e) {
      hook.lastError = String(e);
    }
  }

  // The pools' response caches (GET /api/v1/cache); the panel shows only when one exists.
  async function caches() {
    try {
      const r = await fetch("api/v1/cache", { headers, cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const list = await r.json();
      document.getElementById("cache-section").hidden = list.length === 0;
      const tb = document.querySelector("#caches tbody");
      tb.textContent = "";
      for (const c of list) {
        const q = c.requests;
        const served = q.hit + q.coalesced + q.stale + q.revalidated;
        const ratio = served + q.miss ? Math.round(100 * served / (served + q.miss)) + " %" : "–";
        const mib = b => (b / 1048576).toFixed(1) + " MiB";
        const tr = el("tr", { "data-pool": c.pool });
        for (const v of [c.pool, ratio, q.hit, q.miss, q.coalesced, q.stale, q.revalidated, q.pass, c.urls,
                         mib(c.bytes) + " / " + mib(c.maxBytes), c.evictions]) {
          tr.appendChild(el("td", {}, String(v)));
        }
        tb.appendChild(tr);
      }
      hook.caches = list.length;
    } catch (e) {
      hook.lastError = String(e);
    }
  }

  async function tick() {
    const status = document.getElementById("status");
    try {
      const url = "api/v1/stats" + (store.since ? "?since=" + store.since : "");
      const r = await fetch(url, { headers, cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const d = await r.json();
      const names = new Set(d.pools.map(p => p.name));
      for (const name of Object.keys(store.pools)) {
        if (!names.has(name)) {
          delete store.pools[name];
          const card = document.getElementById("pool-" + safeId(name));
          if (card) card.remove();
        }
      }
      for (const p of d.pools) {
        poolCard(merge(store.pools, p.name, p, { name: p.name, state: p.state, kind: p.kind }));
      }
      for (const w of d.workers) {
        if (!w.alive) {
          delete store.workers[w.pid];
          workerCard(w);
          continue;
        }
        workerCard(merge(store.workers, w.pid, w, { pid: w.pid, pool: w.pool, alive: true }));
      }
      for (const pid of Object.keys(store.workers)) {
        if (!d.workers.some(w => String(w.pid) === pid)) {
          delete store.workers[pid];
          const card = document.getElementById("worker-" + safeId(pid));
          if (card) card.remove();
        }
      }
      if (d.at_unix_ms) store.since = d.at_unix_ms;
      requests(d.requests || []);
      hook.last = d;
      hook.updates++;
      status.textContent = "live";
      status.className = "status ok";
      document.getElementById("updated").textContent = d.at_unix_ms ? new Date(d.at_unix_ms).toLocaleTimeString() : "";
      document.body.setAttribute("data-updates", String(hook.updates));
    } catch (e) {
      hook.lastError = String(e);
      status.textContent = "admin API unreachable";
      status.className = "status err";
    }
  }

  tick();
  setInterval(tick, 1000);
  diagnose();
  setInterval(diagnose, 3000);
  poolDetails();
  setInterval(poolDetails, 3000);
  caches();
  setInterval(caches, 2000);
})();

// The gateway's status page: polls /v1/status and /v1/book once a second.
// No external resources. A token (when the gateway requires one) is taken
// from the URL fragment, e.g. http://host:8080/#token=SECRET, and kept in
// sessionStorage; the fragment is never sent to the server.
"use strict";

const state = { prev: null, prevAt: 0, picks: [], token: null };

function parseHash() {
  const h = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (h.get("token")) {
    sessionStorage.setItem("tickring-token", h.get("token"));
  }
  state.token = sessionStorage.getItem("tickring-token");
  if (h.get("i")) {
    state.picks = h.get("i").split(",").map((s) => s.trim()).filter(Boolean);
  }
}

async function get(path) {
  const headers = {};
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401) throw new Error("unauthorized: open this page as /#token=YOUR_TOKEN");
  if (!r.ok) {
    let msg = r.status + "";
    try { msg += ": " + (await r.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function fmtInt(n) { return Math.round(n).toLocaleString("en-US"); }
function fmtRate(n) { return n >= 100 ? fmtInt(n) : n.toFixed(1); }
function fmtSecs(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  const a = Math.abs(s);
  if (a < 1e-3) return (s * 1e6).toFixed(0) + " µs";
  if (a < 1) return (s * 1e3).toFixed(a < 0.01 ? 2 : 1) + " ms";
  if (a < 120) return s.toFixed(1) + " s";
  return (s / 60).toFixed(0) + " min";
}
// A bucket bound: 10 µs, 2.5 ms, 1 s.
function fmtBound(s) {
  const t = (x) => String(Math.round(x * 100) / 100);
  if (s < 1e-3) return t(s * 1e6) + " µs";
  if (s < 1) return t(s * 1e3) + " ms";
  return t(s) + " s";
}
function fmtUptime(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = Math.floor(s % 60);
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + r + "s";
}

// Exact a - b of two decimal strings (prices are never binary floats).
function decSub(a, b) {
  const split = (s) => { const [i, f = ""] = s.split("."); return [i, f]; };
  const [ai, af] = split(a), [bi, bf] = split(b);
  const d = Math.max(af.length, bf.length);
  const big = (i, f) => BigInt(i + f.padEnd(d, "0"));
  let v = big(ai, af) - big(bi, bf);
  const neg = v < 0n;
  if (neg) v = -v;
  let t = v.toString().padStart(d + 1, "0");
  let out = d ? t.slice(0, t.length - d) + "." + t.slice(t.length - d) : t;
  if (d) out = out.replace(/0+$/, "").replace(/\.$/, "");
  return (neg ? "-" : "") + out;
}

function pill(text, cls) { return el("span", { class: "pill " + cls }, text); }

function writerPill(f) {
  if (!f.open) return pill("not open", "err");
  const st = f.writer ? f.writer.state : "unknown";
  return pill(st, st === "running" ? "ok" : "err");
}

function feedPill(f) {
  const c = f.connection;
  const bad = f.instruments.filter((i) => i.book === "resyncing").length;
  if (c === "disconnected") return pill("disconnected", "err");
  if (bad) return pill(bad + " resyncing", "warn");
  return pill(c, c === "connected" ? "ok" : "warn");
}

function renderFeeds(feeds) {
  const body = document.querySelector("#feeds tbody");
  body.replaceChildren();
  for (const f of feeds) {
    const t = f.totals;
    const ra = f.read_age;
    body.append(el("tr", { "data-ring": f.ring },
      el("td", {}, f.ring),
      el("td", {}, writerPill(f)),
      el("td", {}, feedPill(f)),
      el("td", { class: "num events-rate" }, fmtRate(f.rates.events_per_s)),
      el("td", { class: "num" }, fmtRate(f.rates.trades_per_s)),
      el("td", { class: "num" }, fmtRate(f.rates.book_events_per_s)),
      el("td", { class: "num events-total" }, fmtInt(t.events)),
      el("td", { class: "num" }, fmtSecs(f.last_event_age_s)),
      el("td", { class: "num" }, fmtInt(t.gaps)),
      el("td", { class: "num" }, fmtInt(t.resyncs)),
      el("td", { class: "num" }, fmtInt(t.checksum_failures)),
      el("td", { class: "num" }, fmtInt(t.overruns)),
      el("td", { class: "num" }, ra ? fmtSecs(ra.p50_s) + " / " + fmtSecs(ra.p99_s) : "–"),
    ));
  }
}

// Percentile from bucket counts (upper bounds), interpolating inside a bucket.
function percentile(bounds, counts, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const want = q * total;
  let acc = 0;
  for (let i = 0; i < counts.length; i++) {
    if (acc + counts[i] >= want) {
      const lo = i === 0 ? 0 : bounds[i - 1];
      const hi = i < bounds.length ? bounds[i] : bounds[bounds.length - 1] * 2;
      const frac = counts[i] ? (want - acc) / counts[i] : 0;
      return lo + (hi - lo) * frac;
    }
    acc += counts[i];
  }
  return bounds[bounds.length - 1];
}

function renderAge(age, prevAge) {
  const cum = age.cumulative;
  let per = cum.map((c, i) => c - (i ? cum[i - 1] : 0));
  if (prevAge) {
    const pc = prevAge.cumulative;
    const prevPer = pc.map((c, i) => c - (i ? pc[i - 1] : 0));
    const delta = per.map((c, i) => c - prevPer[i]);
    if (delta.some((d) => d > 0)) per = delta;
  }
  const n = per.reduce((a, b) => a + b, 0);
  const b = age.bounds_s;
  document.getElementById("age-p50").textContent = fmtSecs(percentile(b, per, 0.5));
  document.getElementById("age-p90").textContent = fmtSecs(percentile(b, per, 0.9));
  document.getElementById("age-p99").textContent = fmtSecs(percentile(b, per, 0.99));
  document.getElementById("age-p999").textContent = fmtSecs(percentile(b, per, 0.999));
  document.getElementById("age-n").textContent = fmtInt(n);

  const svg = document.getElementById("age-plot");
  const W = 560, H = 200, L = 36, B = 28, T = 8;
  const ns = "http://www.w3.org/2000/svg";
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  svg.replaceChildren();
  const max = Math.max(1, ...per);
  const bw = (W - L - 4) / per.length;
  svg.append(mk("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }));
  svg.append(mk("text", { x: 2, y: T + 8 }, "share"));
  for (let i = 0; i < per.length; i++) {
    const h = ((H - B - T) * per[i]) / max;
    const x = L + i * bw + 1;
    const r = mk("rect", { class: "bar", x: x, y: H - B - h, width: Math.max(1, bw - 2), height: h });
    r.append(mk("title", {}, "≤ " + (i < b.length ? fmtBound(b[i]) : "∞") + ": " + per[i]));
    svg.append(r);
    if (i % 3 === 0) {
      const lbl = i < b.length ? fmtBound(b[i]) : "+∞";
      svg.append(mk("text", { x: x, y: H - B + 14 }, "≤" + lbl));
    }
  }
  if (n) {
    const pct = ((per.reduce((a, c, i) => a + (i <= 6 ? c : 0), 0)) / n) * 100;
    svg.append(mk("text", { x: W - 4, y: T + 8, "text-anchor": "end" }, pct.toFixed(1) + "% within 1 ms"));
  }
}

async function renderBooks() {
  const body = document.querySelector("#tob tbody");
  const rows = [];
  for (const name of state.picks) {
    const i = name.indexOf(":");
    if (i < 0) continue;
    const ex = name.slice(0, i), sym = name.slice(i + 1);
    try {
      const b = await get("/v1/book/" + encodeURIComponent(ex) + "/" + encodeURIComponent(sym) + "?depth=1");
      const bid = b.bids[0], ask = b.asks[0];
      const spread = bid && ask ? decSub(ask[0], bid[0]) : null;
      rows.push(el("tr", { "data-instrument": name },
        el("td", {}, name, " ", b.valid ? pill("valid", "ok") : pill("not valid", "warn")),
        el("td", { class: "num" }, bid ? bid[1] : "–"),
        el("td", { class: "num bid" }, bid ? bid[0] : "–"),
        el("td", { class: "num ask" }, ask ? ask[0] : "–"),
        el("td", { class: "num" }, ask ? ask[1] : "–"),
        el("td", { class: "num" }, spread === null ? "–" : spread),
      ));
    } catch (e) {
      rows.push(el("tr", {}, el("td", {}, name), el("td", { colspan: 5, class: "dim" }, e.message)));
    }
  }
  body.replaceChildren(...rows);
}

async function tick() {
  const conn = document.getElementById("conn");
  try {
    const s = await get("/v1/status");
    const now = performance.now();
    const g = s.gateway;
    document.getElementById("clients").textContent = fmtInt(g.clients);
    document.getElementById("sent-total").textContent = fmtInt(g.messages_sent);
    document.getElementById("dropped").textContent = fmtInt(g.clients_dropped_slow);
    document.getElementById("uptime").textContent = fmtUptime(s.uptime_s);
    if (state.prev) {
      const dt = (now - state.prevAt) / 1000;
      const rate = (g.messages_sent - state.prev.gateway.messages_sent) / dt;
      document.getElementById("sent-rate").textContent = fmtRate(Math.max(0, rate));
    }
    if (!state.picks.length) {
      state.picks = s.status_instruments.length ? s.status_instruments
        : [].concat(...s.feeds.map((f) => f.instruments.slice(0, 2).map((i) => i.name))).slice(0, 6);
      document.getElementById("pick-input").value = state.picks.join(", ");
    }
    renderFeeds(s.feeds);
    renderAge(s.event_age, state.prev && state.prev.event_age);
    await renderBooks();
    state.prev = s;
    state.prevAt = now;
    conn.textContent = "live";
    conn.className = "conn";
    document.getElementById("updated").textContent =
      "updated " + new Date().toLocaleTimeString() + " · " + s.feeds.length + " ring(s)";
  } catch (e) {
    conn.textContent = e.message;
    conn.className = "conn bad";
  }
}

document.getElementById("pick").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.picks = document.getElementById("pick-input").value.split(",").map((s) => s.trim()).filter(Boolean);
  const h = new URLSearchParams(location.hash.replace(/^#/, ""));
  h.set("i", state.picks.join(","));
  h.delete("token");
  history.replaceState(null, "", "#" + h.toString());
  tick();
});

parseHash();
if (state.picks.length) document.getElementById("pick-input").value = state.picks.join(", ");
tick();
setInterval(tick, 1000);

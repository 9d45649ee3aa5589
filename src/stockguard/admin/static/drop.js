// stockguard drop view: one SKU's sale, live. No build step, no chart library, no CDN.
//
// Every second it asks /admin/api/drop for the SKU's running totals (summed over every
// worker by the server) and turns two answers into rates, and the latency buckets'
// increase into a p95, as Prometheus's rate() and histogram_quantile() would: the server
// keeps no history, so it does not matter which worker answers. Each chart is a small SVG
// redrawn from the last two minutes of points; its figure carries data-first,
// data-latest and data-peak for tests and for anyone scripting the page.
"use strict";

(() => {
  const root = document.getElementById("drop");
  if (!root) return;
  const sku = root.dataset.sku;
  const pollMs = Number(root.dataset.pollMs) || 1000;
  const pointsMax = Number(root.dataset.points) || 120;
  const workers = Number(root.dataset.workers) || 1;
  const NS = "http://www.w3.org/2000/svg";
  const WIDTH = 560;
  const HEIGHT = 180;
  const PAD = { left: 52, right: 10, top: 10, bottom: 22 };
  const decimals = (places) => (value) => (value === 0 ? "0" : value.toFixed(value < 10 ? places : 0));
  const CHARTS = {
    reservations: decimals(1),
    refusals: decimals(1),
    available: (value) => String(Math.round(value)),
    p95: decimals(2),
  };
  const series = { reservations: [], refusals: [], available: [], p95: [] };
  let previous = null;
  let stopped = false;

  // ------------------------------------------------------------------ figures

  function perSecond(now, before, key) {
    const seconds = (now.at_ms - before.at_ms) / 1000;
    const increase = now[key] - before[key];
    if (!(seconds > 0) || increase < 0) return null; // a restarted serve starts from 0
    return increase / seconds;
  }

  // The 95th percentile of the requests between two readings, by linear interpolation
  // inside the bucket that holds it (histogram_quantile's rule); in the +Inf bucket, the
  // largest finite bound. null when no request was counted in between.
  function p95Ms(now, before) {
    const counts = now.latency.counts;
    const earlier = before.latency.counts.length === counts.length
      ? before.latency.counts
      : counts.map(() => 0);
    const increase = counts.map((count, i) => count - earlier[i]);
    const total = increase[increase.length - 1];
    if (!(total > 0)) return null;
    const bounds = now.latency.le_s;
    const rank = 0.95 * total;
    for (let i = 0; i < increase.length; i += 1) {
      if (increase[i] < rank) continue;
      if (i >= bounds.length) return bounds[bounds.length - 1] * 1000;
      const lower = i === 0 ? 0 : bounds[i - 1];
      const below = i === 0 ? 0 : increase[i - 1];
      const inside = increase[i] - below;
      const share = inside > 0 ? (rank - below) / inside : 1;
      return (lower + (bounds[i] - lower) * share) * 1000;
    }
    return null;
  }

  function push(key, value) {
    const values = series[key];
    values.push(value);
    if (values.length > pointsMax) values.shift();
  }

  // ------------------------------------------------------------------ drawing

  function svgElement(name, attributes) {
    const element = document.createElementNS(NS, name);
    for (const [attribute, value] of Object.entries(attributes)) element.setAttribute(attribute, String(value));
    return element;
  }

  function roundedUp(value) {
    if (value <= 1) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function draw(key) {
    const figure = root.querySelector(`[data-chart="${key}"]`);
    const svg = figure.querySelector("svg");
    const values = series[key];
    const known = values.filter((value) => value !== null);
    const top = roundedUp(Math.max(0, ...known));
    const plotWidth = WIDTH - PAD.left - PAD.right;
    const plotHeight = HEIGHT - PAD.top - PAD.bottom;
    const x = (i) => PAD.left + ((i + pointsMax - values.length) * plotWidth) / (pointsMax - 1);
    const y = (value) => PAD.top + plotHeight - (value / top) * plotHeight;
    const children = [];
    for (const fraction of [0, 0.5, 1]) {
      const level = y(top * fraction);
      children.push(svgElement("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: level, y2: level }));
      const label = svgElement("text", { class: "axis-label", x: PAD.left - 6, y: level + 4, "text-anchor": "end" });
      label.textContent = CHARTS[key](top * fraction);
      children.push(label);
    }
    for (const [text, where, anchor] of [["−2 min", PAD.left, "start"], ["now", WIDTH - PAD.right, "end"]]) {
      const label = svgElement("text", { class: "axis-label", x: where, y: HEIGHT - 6, "text-anchor": anchor });
      label.textContent = text;
      children.push(label);
    }
    // One path per unbroken run of points: a second without a figure is a gap, not a zero.
    let line = "";
    let area = "";
    let runStart = null;
    values.forEach((value, i) => {
      if (value === null) {
        if (runStart !== null) area += `L${x(i - 1)},${y(0)}L${x(runStart)},${y(0)}Z`;
        runStart = null;
        return;
      }
      line += `${runStart === null ? "M" : "L"}${x(i)},${y(value)}`;
      area += `${runStart === null ? "M" : "L"}${x(i)},${y(value)}`;
      if (runStart === null) runStart = i;
    });
    if (runStart !== null) area += `L${x(values.length - 1)},${y(0)}L${x(runStart)},${y(0)}Z`;
    if (area) children.push(svgElement("path", { class: "area", d: area }));
    if (line) children.push(svgElement("path", { class: "line", d: line }));
    svg.replaceChildren(...children);

    const latest = values.length ? values[values.length - 1] : null;
    figure.querySelector('[data-slot="value"]').textContent = latest === null ? "–" : CHARTS[key](latest);
    figure.dataset.latest = latest === null ? "" : String(latest);
    figure.dataset.first = known.length ? String(known[0]) : "";
    figure.dataset.peak = known.length ? String(Math.max(...known)) : "";
    figure.dataset.points = String(known.length);
  }

  // ------------------------------------------------------------------ polling

  function showFigures(data) {
    for (const field of ["on_hand", "reserved", "available"]) {
      root.querySelector(`[data-figure="${field}"]`).textContent = String(data.stock[field]);
    }
    root.querySelector('[data-figure="held"]').textContent = String(data.held);
    root.querySelector('[data-figure="refused"]').textContent = String(data.refused);
    root.dataset.counting = String(data.counting);
    const time = new Date(data.at_ms).toLocaleTimeString();
    document.getElementById("drop-status").textContent =
      `Counted by ${data.counting} of ${workers} worker${workers === 1 ? "" : "s"} · updated ${time}`;
    setLive("ok", `Live · ${time}`);
  }

  function setLive(state, text) {
    const live = document.getElementById("live-status");
    if (!live) return;
    live.dataset.state = state;
    live.querySelector(".live-text").textContent = text;
  }

  function stop(message) {
    stopped = true;
    setLive("error", "Stopped");
    const box = document.getElementById("drop-error");
    box.textContent = message;
    box.hidden = false;
  }

  async function pollOnce() {
    const response = await fetch(`/admin/api/drop?${new URLSearchParams({ sku })}`, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.status === 401) {
      const banner = document.getElementById("session-banner");
      if (banner) banner.hidden = false;
      stop("Your session has ended; sign in again to keep watching.");
      return;
    }
    const data = await response.json();
    if (!data.ok) {
      stop(data.message);
      return;
    }
    push("available", data.stock.available);
    if (previous !== null) {
      push("reservations", perSecond(data, previous, "held"));
      push("refusals", perSecond(data, previous, "refused"));
      push("p95", p95Ms(data, previous));
    }
    previous = data;
    showFigures(data);
    for (const key of Object.keys(CHARTS)) draw(key);
  }

  async function poll() {
    try {
      await pollOnce();
    } catch (error) {
      document.getElementById("drop-status").textContent = "Reconnecting…";
      setLive("error", "Reconnecting…");
    }
    if (!stopped) setTimeout(poll, pollMs);
  }

  for (const key of Object.keys(CHARTS)) draw(key);
  poll();
})();

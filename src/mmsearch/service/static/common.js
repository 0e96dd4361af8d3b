// Shared helpers of the mmsearch pages: API calls, result cards, explanations, feedback.
"use strict";

const mm = {};

mm.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

// Writes made with the login cookie carry the page's CSRF token (a cross-site page cannot read it).
mm.csrf = function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
};

mm.api = async function (url, options) {
  options = Object.assign({}, options);
  const method = (options.method || "GET").toUpperCase();
  if (method !== "GET" && method !== "HEAD" && mm.csrf()) {
    options.headers = Object.assign({}, options.headers, { "x-csrf-token": mm.csrf() });
  }
  const response = await fetch(url, options);
  if (response.status === 401 && !url.startsWith("/v1/session")) {
    window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("sign in first");
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
};

mm.fmt = (value, digits = 3) =>
  typeof value === "number" ? value.toFixed(digits).replace(/\.?0+$/, "") : String(value);

const SIGNAL_LABELS = {
  keyword: "keywords (BM25)",
  text_vector: "meaning (text vector)",
  image_vector: "look (image vector)",
};

mm.signalRows = function (rows) {
  // rows: [name, share (0..1 of the bar), label]
  return rows.map(([name, share, label]) => mm.el("div", { class: "signal-row" },
    mm.el("span", { class: "signal-name", text: SIGNAL_LABELS[name] || name }),
    mm.el("span", { class: "bar-track" },
      mm.el("span", { class: `bar-fill sig-${name}`, style: `width:${Math.max(2, Math.round(100 * share))}%` })),
    mm.el("span", { class: "signal-val", text: label })));
};

mm.explanation = function (hit) {
  // The server's explanation when it gives one (signal contributions, reranker, rules);
  // else each signal's score and rank, with its reciprocal-rank share.
  const box = mm.el("div", { class: "explain" });
  const data = hit.explanation;
  if (data && typeof data === "object" && data.signals) {
    const entries = Object.entries(data.signals);
    const total = entries.reduce((sum, [, s]) => sum + Math.max(0, s.contribution || 0), 0) || 1;
    box.append(...mm.signalRows(entries.map(([name, s]) => [name, Math.max(0, s.contribution || 0) / total,
      `#${s.rank} · score ${mm.fmt(s.score)} · +${mm.fmt(s.contribution || 0, 4)}${s.weight !== undefined && s.weight !== 1 ? ` ×${mm.fmt(s.weight, 2)}` : ""}`])));
    const notes = [`fusion ${data.fusion || "?"} → ${mm.fmt(data.fused_score, 4)}`];
    if (data.reranker) notes.push(`reranker ${typeof data.reranker === "object" ? JSON.stringify(data.reranker) : data.reranker}`);
    if (data.rules && data.rules.length) notes.push(`rules: ${data.rules.map((r) => (typeof r === "object" ? r.name || JSON.stringify(r) : r)).join(", ")}`);
    if (data.final_score !== undefined && data.final_score !== data.fused_score) notes.push(`final ${mm.fmt(data.final_score, 4)}`);
    box.append(mm.el("div", { class: "muted", text: notes.join(" · ") }));
    return box;
  }
  if (data) {
    box.append(mm.el("pre", { text: JSON.stringify(data, null, 1) }));
    return box;
  }
  const parts = Object.entries(hit.signals || {}).map(([name, s]) => [name, s, 1 / (60 + s.rank)]);
  const total = parts.reduce((sum, p) => sum + p[2], 0) || 1;
  box.append(...mm.signalRows(parts.map(([name, s, share]) => [name, share / total, `#${s.rank} · ${mm.fmt(s.score)}`])));
  if (!parts.length) box.append(mm.el("p", { class: "muted", text: "no signal details" }));
  return box;
};

mm.sendFeedback = function (queryId, itemId, position) {
  if (!queryId) return;
  const body = JSON.stringify({ query_id: queryId, item_id: itemId, position });
  // fetch, not sendBeacon: a beacon cannot carry the CSRF header.
  const headers = { "content-type": "application/json" };
  if (mm.csrf()) headers["x-csrf-token"] = mm.csrf();
  fetch("/v1/feedback", { method: "POST", headers, body, keepalive: true }).catch(() => {});
};

mm.card = function (hit, response, handlers) {
  const image = hit.image_urls.length
    ? mm.el("img", { src: hit.image_urls[0], alt: hit.title, loading: "lazy" })
    : mm.el("div", { class: "noimage", text: "no image" });
  const link = mm.el("a", {
    href: hit.item_url, class: "thumb",
    onclick: () => mm.sendFeedback(response.query_id, hit.id, hit.rank),
  }, image);
  const details = mm.el("details", { class: "why" }, mm.el("summary", { text: "why this result" }),
    mm.explanation(hit));
  const actions = mm.el("div", { class: "card-actions" });
  if (hit.image_urls.length && handlers && handlers.searchWithImage) {
    actions.append(mm.el("button", {
      type: "button", class: "link", text: "search with this image",
      onclick: () => handlers.searchWithImage(hit.image_urls[0], hit.title),
    }));
  }
  return mm.el("article", { class: "card", "data-id": hit.id },
    link,
    mm.el("div", { class: "card-body" },
      mm.el("a", {
        href: hit.item_url, class: "card-title", text: hit.title || hit.id,
        onclick: () => mm.sendFeedback(response.query_id, hit.id, hit.rank),
      }),
      mm.el("div", { class: "card-meta" },
        mm.el("span", { class: "rank", text: `#${hit.rank}` }),
        mm.el("span", { class: "score", title: "fused score", text: mm.fmt(hit.score, 4) })),
      details, actions));
};

mm.renderStatus = function (node, response) {
  const total = response.timings_ms && response.timings_ms.total;
  const stages = Object.entries(response.timings_ms || {})
    .filter(([k]) => k !== "total").map(([k, v]) => `${k} ${mm.fmt(v, 1)} ms`).join(" · ");
  node.replaceChildren(
    mm.el("span", { text: `${response.hits.length ? "" : "No results. "}${mm.fmt(total, 1)} ms` }),
    mm.el("span", { class: "muted", text: ` — ${stages}` }),
    ...response.warnings.map((w) => mm.el("div", { class: "warning", text: w })));
};

// The sign-out link of the top bar (shown only with a session).
document.addEventListener("DOMContentLoaded", () => {
  const link = document.getElementById("sign-out");
  if (!link) return;
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    await mm.api("/v1/session", { method: "DELETE" }).catch(() => {});
    window.location.href = "/login";
  });
});

// The search page: text box, image drop zone, filters from the collection's attributes.
// A text search lives in the URL (?collection=&q=&mode=&filters=&page=&k=), so that a
// result page can be shared, bookmarked and reloaded; an image query cannot travel in a
// URL, so an image search keeps its state in the page only.
"use strict";

(function () {
  const app = document.getElementById("search-app");
  if (!app) return;
  const $ = (id) => document.getElementById(id);
  const state = {
    collection: app.dataset.collection, image: null, imageName: "", page: 1, last: null,
    searched: false,  // a search has run: the URL's own search, once facets load, is moot
    graphSkip: [], graphText: "",  // entity chips the user removed, for this query text
  };
  const DEFAULT_K = "24";

  $("collection").addEventListener("change", (e) => {
    window.location.search = `?collection=${encodeURIComponent(e.target.value)}`;
  });

  async function loadFacets() {
    const box = $("facets");
    try {
      const data = await mm.api(`/v1/collections/${encodeURIComponent(state.collection)}/facets`);
      box.replaceChildren();
      for (const facet of data.facets) {
        if (facet.values) {
          const select = mm.el("select", { "data-field": facet.field, "data-kind": "value" },
            mm.el("option", { value: "", text: "any" }),
            facet.values.map((v, i) => mm.el("option", {
              value: String(v), text: facet.counts ? `${v} (${facet.counts[i]})` : String(v),
            })));
          select.addEventListener("change", () => search(1));
          box.append(mm.el("label", { class: "field" }, facet.field, select));
        } else if (facet.min !== undefined && facet.min !== null) {
          const input = (which, value) => mm.el("input", {
            type: "number", step: "any", placeholder: `${which} ${mm.fmt(value, 2)}`,
            "data-field": facet.field, "data-kind": which,
          });
          box.append(mm.el("div", { class: "field" }, facet.field,
            mm.el("div", { class: "range" }, input("min", facet.min), input("max", facet.max))));
        }
      }
      if (!data.facets.length) box.replaceChildren(mm.el("p", { class: "muted", text: "no attributes" }));
    } catch (error) {
      box.replaceChildren(mm.el("p", { class: "error", text: error.message }));
    }
  }

  function filters() {
    const out = {};
    for (const node of $("facets").querySelectorAll("[data-field]")) {
      const field = node.dataset.field;
      if (node.value === "") continue;
      if (node.dataset.kind === "value") {
        out[field] = node.value === "true" ? true : node.value === "false" ? false : node.value;
      } else {
        out[field] = out[field] || {};
        out[field][node.dataset.kind] = Number(node.value);
      }
    }
    return out;
  }

  function setFilters(values) {
    for (const node of $("facets").querySelectorAll("[data-field]")) {
      const value = values[node.dataset.field];
      if (value === undefined || value === null) node.value = "";
      else if (node.dataset.kind === "value") node.value = String(value);
      else node.value = value[node.dataset.kind] === undefined ? "" : String(value[node.dataset.kind]);
    }
  }

  // The URL of a text search: what the form holds and the page shown.
  function stateUrl(page) {
    const params = new URLSearchParams({ collection: state.collection });
    const text = $("query").value.trim();
    if (text) params.set("q", text);
    if ($("mode").value) params.set("mode", $("mode").value);
    const chosen = filters();
    if (Object.keys(chosen).length) params.set("filters", JSON.stringify(chosen));
    if ($("k").value !== DEFAULT_K) params.set("k", $("k").value);
    if (page > 1) params.set("page", String(page));
    return `${location.pathname}?${params}`;
  }

  // The search a URL describes (a shared link, a reload, the back button).
  function urlSearch() {
    const params = new URLSearchParams(location.search);
    let chosen = {};
    try { chosen = JSON.parse(params.get("filters") || "{}") || {}; } catch (error) { chosen = {}; }
    return {
      text: params.get("q") || "", mode: params.get("mode") || "", k: params.get("k"), filters: chosen,
      page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1),
    };
  }

  // The text box, mode and page size need no server answer, so they are filled at once:
  // someone typing while the facets load must not have their words replaced later.
  function restoreFormFromUrl(wanted) {
    $("query").value = wanted.text;
    $("mode").value = wanted.mode;
    if (wanted.k && [...$("k").options].some((o) => o.value === wanted.k)) $("k").value = wanted.k;
  }

  // Fill the whole form from the URL and search (the back and forward buttons).
  function restoreFromUrl() {
    const wanted = urlSearch();
    restoreFormFromUrl(wanted);
    setFilters(wanted.filters);
    if (wanted.text.trim()) search(wanted.page, { history: false });
  }

  function setImage(blob, name) {
    state.image = blob;
    state.imageName = name || "image";
    $("image-preview").src = URL.createObjectURL(blob);
    $("image-name").textContent = state.imageName;
    $("image-chip").hidden = false;
    $("drop-label").hidden = true;
  }

  function clearImage() {
    state.image = null;
    $("image-chip").hidden = true;
    $("drop-label").hidden = false;
    $("image-input").value = "";
  }

  async function searchWithImage(url, title) {
    const blob = await (await fetch(url)).blob();
    $("query").value = "";
    setImage(blob, title);
    window.scrollTo({ top: 0, behavior: "smooth" });
    search(1);
  }

  // Show result page ``page`` (1-based; the API pages with offset = (page - 1) * k).
  // A new text search is a new history entry unless ``history`` is false (restoring).
  async function search(page, options) {
    const text = $("query").value.trim();
    if (!text && !state.image) {
      $("status").textContent = "Type a query or add an image.";
      return;
    }
    state.page = page;
    state.searched = true;
    const k = Number($("k").value);
    const offset = (page - 1) * k;
    if (state.image) {
      // An image cannot ride in the URL: drop a text search's state rather than show it.
      history.replaceState(null, "", `${location.pathname}?${new URLSearchParams({ collection: state.collection })}`);
    } else if (!(options && options.history === false)) {
      const url = stateUrl(page);
      if (url !== location.pathname + location.search) history.pushState(null, "", url);
    }
    const query = { k, offset, explain: $("explain").checked, filters: filters() };
    if (text !== state.graphText) { state.graphSkip = []; state.graphText = text; }
    if (state.graphSkip.length) query.graph_skip = state.graphSkip;
    if ($("mode").value) query.mode = $("mode").value;
    const form = new FormData();
    if (text) query.text = text;
    form.append("query", JSON.stringify(query));
    if (state.image) form.append("image", state.image, state.imageName);
    $("status").textContent = "Searching…";
    app.classList.add("busy");
    try {
      const response = await mm.api(`/v1/collections/${encodeURIComponent(state.collection)}/search`,
        { method: "POST", body: form });
      state.last = response;
      mm.renderStatus($("status"), response);
      renderEntities(response.routing);
      const cards = response.hits.map((hit) => mm.card(hit, response, { searchWithImage }));
      $("results").replaceChildren(...cards);
      $("prev-page").hidden = page <= 1;
      $("next-page").hidden = response.hits.length < k;
      $("page-label").textContent = page > 1 || response.hits.length >= k ? `page ${page}` : "";
    } catch (error) {
      $("status").replaceChildren(mm.el("span", { class: "error", text: error.message }));
      $("results").replaceChildren();
      $("prev-page").hidden = $("next-page").hidden = true;
    } finally {
      app.classList.remove("busy");
    }
  }

  // The entities the query named (graph routing), as chips; removing one searches again
  // without it (the API's graph_skip), and shows it struck through so it can come back.
  function renderEntities(routing) {
    const box = $("entity-chips");
    const chips = ((routing && routing.entities) || []).map((entity) => mm.el("span",
      { class: "chip entity", title: `${entity.kind} match for "${entity.text}": ${entity.effects.join("; ")}` },
      entity.entity,
      mm.el("button", { type: "button", class: "link", "aria-label": `remove ${entity.entity}`, text: "✕",
        onclick: () => { state.graphSkip.push(entity.entity); search(1); } })));
    const removed = state.graphSkip.map((key) => mm.el("span", { class: "chip entity removed" },
      mm.el("s", { text: key }),
      mm.el("button", { type: "button", class: "link", "aria-label": `restore ${key}`, text: "↺",
        onclick: () => { state.graphSkip = state.graphSkip.filter((k) => k !== key); search(1); } })));
    box.replaceChildren(...chips, ...removed);
    box.hidden = !chips.length && !removed.length;
  }

  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(1); });
  $("next-page").addEventListener("click", () => { search(state.page + 1); window.scrollTo({ top: 0 }); });
  $("prev-page").addEventListener("click", () => { search(state.page - 1); window.scrollTo({ top: 0 }); });
  window.addEventListener("popstate", () => { if (!state.image) restoreFromUrl(); });
  $("pick-image").addEventListener("click", () => $("image-input").click());
  $("clear-image").addEventListener("click", clearImage);
  $("image-input").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) { setImage(file, file.name); search(1); }
  });
  $("clear-filters").addEventListener("click", () => {
    for (const node of $("facets").querySelectorAll("[data-field]")) node.value = "";
    search(1);
  });
  $("facets").addEventListener("change", (e) => { if (e.target.type === "number") search(1); });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file && file.type.startsWith("image/")) { setImage(file, file.name); search(1); }
  });

  const pending = sessionStorage.getItem("mmsearch.searchImage");
  if (pending) {
    sessionStorage.removeItem("mmsearch.searchImage");
    const { url, title } = JSON.parse(pending);
    searchWithImage(url, title);
    loadFacets();
  } else {
    // Filters come from the URL, so the facet controls must exist before they are set;
    // the URL's search runs then, unless the user has already searched meanwhile.
    const wanted = urlSearch();
    restoreFormFromUrl(wanted);
    loadFacets().then(() => {
      if (state.searched) return;
      setFilters(wanted.filters);
      if (wanted.text.trim()) search(wanted.page, { history: false });
    });
  }
})();

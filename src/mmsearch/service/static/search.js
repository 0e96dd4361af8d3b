// The search page: text box, image drop zone, filters from the collection's attributes.
"use strict";

(function () {
  const app = document.getElementById("search-app");
  if (!app) return;
  const $ = (id) => document.getElementById(id);
  const state = { collection: app.dataset.collection, image: null, imageName: "", offset: 0, last: null };

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
          select.addEventListener("change", () => search(0));
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
    search(0);
  }

  async function search(offset) {
    const text = $("query").value.trim();
    if (!text && !state.image) {
      $("status").textContent = "Type a query or add an image.";
      return;
    }
    state.offset = offset;
    const k = Number($("k").value);
    const query = { k, offset, explain: $("explain").checked, filters: filters() };
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
      const cards = response.hits.map((hit) => mm.card(hit, response, { searchWithImage }));
      if (offset === 0) $("results").replaceChildren(...cards);
      else $("results").append(...cards);
      $("more").hidden = response.hits.length < k;
    } catch (error) {
      $("status").replaceChildren(mm.el("span", { class: "error", text: error.message }));
      if (offset === 0) $("results").replaceChildren();
    } finally {
      app.classList.remove("busy");
    }
  }

  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(0); });
  $("more").addEventListener("click", () => search(state.offset + Number($("k").value)));
  $("pick-image").addEventListener("click", () => $("image-input").click());
  $("clear-image").addEventListener("click", clearImage);
  $("image-input").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) { setImage(file, file.name); search(0); }
  });
  $("clear-filters").addEventListener("click", () => {
    for (const node of $("facets").querySelectorAll("[data-field]")) node.value = "";
    search(0);
  });
  $("facets").addEventListener("change", (e) => { if (e.target.type === "number") search(0); });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file && file.type.startsWith("image/")) { setImage(file, file.name); search(0); }
  });

  const pending = sessionStorage.getItem("mmsearch.searchImage");
  if (pending) {
    sessionStorage.removeItem("mmsearch.searchImage");
    const { url, title } = JSON.parse(pending);
    searchWithImage(url, title);
  }
  loadFacets();
})();

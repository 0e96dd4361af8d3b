// The item page: "more like this" by look (image vector) or by meaning (text vector).
"use strict";

(function () {
  const app = document.getElementById("item-app");
  if (!app) return;
  const collection = app.dataset.collection;
  const item = app.dataset.item;
  const status = document.getElementById("status");
  const results = document.getElementById("results");

  function searchWithImage(url, title) {
    sessionStorage.setItem("mmsearch.searchImage", JSON.stringify({ url, title }));
    window.location.href = `/?collection=${encodeURIComponent(collection)}`;
  }

  async function similar(by) {
    for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.by === by);
    status.textContent = "Searching…";
    try {
      const url = `/v1/collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(item)}/similar?by=${by}&k=12`;
      const response = await mm.api(url);
      mm.renderStatus(status, response);
      results.replaceChildren(...response.hits.map((hit) => mm.card(hit, response, { searchWithImage })));
    } catch (error) {
      status.replaceChildren(mm.el("span", { class: "error", text: error.message }));
      results.replaceChildren();
    }
  }

  // Related entities from the build's graph: for each attribute value that is an entity,
  // its parents, children and strongest co-occurring entities, each a link to a search.
  // Values that are no entity answer 404 and are skipped; the route counts only items
  // this caller may see.
  async function related() {
    const wanted = [];
    for (const node of document.querySelectorAll("[data-attr]")) {
      for (const part of node.dataset.value.split(/\s*[,;|]\s*/)) {
        if (part) wanted.push(`${node.dataset.attr}=${part}`);
      }
    }
    const seen = new Set();
    const chips = [];
    for (const entity of wanted.slice(0, 8)) {
      try {
        const url = `/v1/collections/${encodeURIComponent(collection)}/graph/${encodeURIComponent(entity)}?limit=5`;
        const found = await mm.api(url);
        for (const one of found.entities) {
          for (const n of one.neighbours) {
            if (seen.has(n.entity)) continue;
            seen.add(n.entity);
            const href = `/?${new URLSearchParams({ collection, q: n.label })}`;
            chips.push(mm.el("a", { class: "chip entity", href, title: `${n.relation} of ${one.entity}, ${n.shared_items} items in common` }, n.entity));
          }
        }
      } catch (error) { /* not an entity, or no graph: nothing to relate */ }
    }
    document.getElementById("related").replaceChildren(...chips);
    document.getElementById("related-entities").hidden = !chips.length;
  }

  related();
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => similar(tab.dataset.by));
  for (const button of document.querySelectorAll(".search-image")) {
    button.addEventListener("click", () => searchWithImage(button.dataset.src, document.title));
  }
  similar(document.querySelector(".item-images img") ? "look" : "meaning");
})();

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

  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => similar(tab.dataset.by));
  for (const button of document.querySelectorAll(".search-image")) {
    button.addEventListener("click", () => searchWithImage(button.dataset.src, document.title));
  }
  similar(document.querySelector(".item-images img") ? "look" : "meaning");
})();

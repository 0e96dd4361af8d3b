// The review page: approve or reject the item with a reason, through the review API.
"use strict";

(function () {
  const app = document.getElementById("review-app");
  const form = document.getElementById("verdict-form");
  const status = document.getElementById("status");
  if (!app || !form) return;
  const url = `/v1/collections/${encodeURIComponent(app.dataset.collection)}/review/${encodeURIComponent(app.dataset.item)}`;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const decision = event.submitter ? event.submitter.value : "approve";
    try {
      const done = await mm.api(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ decision, reason: form.reason.value.trim() }),
      });
      const verb = decision === "approve" ? "approved" : "rejected";
      status.textContent = `${verb}: ${done.hidden ? "kept out of search" : "visible in search"}` +
        (done.allow_listed ? `; ${done.allow_listed} banned-image pair(s) allow-listed` : "");
      setTimeout(() => window.location.reload(), 800);
    } catch (error) {
      status.replaceChildren(mm.el("span", { class: "error", text: error.message }));
    }
  });
})();

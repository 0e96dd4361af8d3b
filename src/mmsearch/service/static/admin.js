// The admin page: start an ingest (upload or server path) and poll job progress.
"use strict";

(function () {
  const table = document.querySelector("#jobs tbody");
  const status = document.getElementById("ingest-status");
  let timer = null;

  function row(job) {
    const pct = job.progress === null ? null : Math.round(job.progress * 100);
    const counts = job.report ? job.report.counts : null;
    return mm.el("tr", { "data-job": job.id },
      mm.el("td", {}, mm.el("code", { text: job.id })),
      mm.el("td", { text: job.collection }),
      mm.el("td", {}, mm.el("span", { class: `badge ${job.status === "failed" ? "bad" : job.status === "succeeded" ? "good" : ""}`, text: job.waiting_for_writer ? "waiting for another writer" : job.status })),
      mm.el("td", {}, mm.el("progress", { max: 100, value: pct === null ? null : pct }),
        ` ${job.processed}${job.total ? " / " + job.total : ""} rows`),
      mm.el("td", { text: job.created_at.replace(/\.\d+/, "") }),  // to the second
      mm.el("td", { text: job.error || (counts ? `${counts.added} added, ${counts.updated} updated, ${counts.failed} failed` : "") }));
  }

  async function refresh() {
    try {
      const data = await mm.api("/v1/jobs");
      table.replaceChildren(...data.jobs.map(row));
      if (!data.jobs.length) table.replaceChildren(mm.el("tr", {}, mm.el("td", { colspan: 6, class: "muted", text: "no ingest jobs since the server started" })));
      const active = data.jobs.some((j) => j.status === "queued" || j.status === "running");
      clearTimeout(timer);
      timer = setTimeout(refresh, active ? 700 : 5000);
    } catch (error) {
      status.textContent = error.message;
    }
  }

  document.getElementById("ingest-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const name = form.collection.value.trim();
    const file = form.file.files[0];
    const url = `/v1/collections/${encodeURIComponent(name)}/ingest`;
    try {
      let job;
      if (file) {
        const body = new FormData();
        body.append("file", file);
        job = await mm.api(url, { method: "POST", body });
      } else {
        job = await mm.api(url, {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ catalog: form.catalog.value.trim() }),
        });
      }
      status.textContent = `started ${job.id}`;
      refresh();
    } catch (error) {
      status.replaceChildren(mm.el("span", { class: "error", text: error.message }));
    }
  });
  refresh();
})();

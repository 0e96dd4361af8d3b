// The sign-in page: trade an API key for a session cookie, then go where the user was going.
"use strict";

(function () {
  const form = document.getElementById("login-form");
  if (!form) return;
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      await mm.api("/v1/session", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: document.getElementById("api-key").value }),
      });
      const next = form.dataset.next || "/";
      // The server already kept only a same-origin path; check again before leaving.
      const sameOrigin = new URL(next, window.location.origin).origin === window.location.origin;
      window.location.href = sameOrigin && !/[\\\s]/.test(next) ? next : "/";
    } catch (problem) {
      error.textContent = problem.message;
      error.hidden = false;
    }
  });
})();

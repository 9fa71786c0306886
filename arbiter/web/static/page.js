// The status page refreshes its live part in place (no reload): fetch the fragment,
// swap it in, and say so when the arbiter stops answering.
(function () {
  "use strict";
  const every = Number(document.body.dataset.refreshMs) || 2000;
  const live = document.getElementById("live");
  const conn = document.getElementById("conn");
  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const r = await fetch("/ui/live", {cache: "no-store", credentials: "same-origin"});
      if (!r.ok) throw new Error("HTTP " + r.status);
      live.innerHTML = await r.text();
      const overall = live.querySelector("[data-overall]");
      if (overall) document.title = "keepalived-arbiter: " + overall.dataset.overall.toUpperCase();
      conn.textContent = "live";
      conn.className = "conn ok";
    } catch (e) {
      conn.textContent = "not answering (" + e.message + ")";
      conn.className = "conn lost";
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, every);
})();

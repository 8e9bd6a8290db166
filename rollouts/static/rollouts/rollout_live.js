/* The rollout page's live part: every few seconds, fetch the fragment URL named by
   [data-live-url] and swap it in when it changed; count bake and "since" times down between two
   fetches. Plain JavaScript, no library. It stops when the rollout has finished. */
(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function words(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) { return h + " h " + pad(m) + " min"; }
    if (m) { return m + " min " + pad(s) + " s"; }
    return s + " s";
  }
  function tick(root) {
    var now = Date.now() / 1000;
    root.querySelectorAll("[data-until]").forEach(function (el) {
      el.textContent = words(parseFloat(el.getAttribute("data-until")) - now);
    });
    root.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = words(now - parseFloat(el.getAttribute("data-since")));
    });
  }
  function start(root) {
    var url = root.getAttribute("data-live-url");
    var every = 1000 * parseFloat(root.getAttribute("data-refresh") || "3");
    var last = root.innerHTML;
    function refresh() {
      if (root.getAttribute("data-finished") === "true") { return; }
      if (document.hidden) { setTimeout(refresh, every); return; }
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.querySelector("[data-live-url]");
          if (!fresh) { throw new Error("not the fragment (logged out?)"); }
          if (fresh.innerHTML !== last) {
            last = fresh.innerHTML;
            root.innerHTML = fresh.innerHTML;
            root.setAttribute("data-finished", fresh.getAttribute("data-finished"));
            tick(root);
          }
          root.removeAttribute("data-stale");
        })
        .catch(function () { root.setAttribute("data-stale", "true"); })
        .then(function () { setTimeout(refresh, every); });
    }
    setInterval(function () { tick(root); }, 1000);
    tick(root);
    setTimeout(refresh, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-url]").forEach(start);
  });
})();

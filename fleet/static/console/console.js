/* edgefleet support console: live fragments and local times. No framework: a page marks an element with
 * data-live-url (and optionally data-live-seconds); its content is fetched again every few seconds and
 * swapped in place. <time datetime="..."> elements are rewritten to the viewer's time zone with seconds,
 * with the site's local time beside them when data-site-tz names its zone. */
(function () {
  "use strict";
  var DATE = {year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
              second: "2-digit", hour12: false, timeZoneName: "short"};
  var CLOCK = {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZoneName: "short"};

  function localizeTimes(root) {
    var times = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var el = times[i];
      if (el.dataset.localized) continue;
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) continue;
      var text = at.toLocaleString(undefined, DATE);
      var tz = el.dataset.siteTz;
      if (tz) {
        try {
          var site = at.toLocaleTimeString(undefined, Object.assign({timeZone: tz}, CLOCK));
          text += " (site " + site + ")";
        } catch (e) { /* an unknown zone name: the viewer's time alone */ }
      }
      el.title = at.toISOString();
      el.textContent = text;
      el.dataset.localized = "1";
    }
  }

  function poll(el) {
    var url = el.dataset.liveUrl;
    var seconds = parseFloat(el.dataset.liveSeconds || "5");
    var busy = false;
    function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
        .then(function (response) {
          // A session that expired answers with the login page: stop rather than show it in a box.
          if (!response.ok || response.redirected) throw new Error("status " + response.status);
          return response.text();
        })
        .then(function (html) {
          el.innerHTML = html;
          el.dataset.refreshedAt = new Date().toISOString();
          el.classList.remove("live-stale");
          localizeTimes(el);
        })
        .catch(function () { el.classList.add("live-stale"); })
        .then(function () { busy = false; });
    }
    setInterval(refresh, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localizeTimes(document);
    var live = document.querySelectorAll("[data-live-url]");
    for (var i = 0; i < live.length; i++) poll(live[i]);
  });
})();

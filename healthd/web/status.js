// Live updates for /status: transitions from /watch change the page at once, and the
// page's HTML is fetched again shortly after (strips, durations, availability).
(function () {
  "use strict";
  var live = document.getElementById("live");
  function age(s) {
    s = Math.max(0, Math.floor(s));
    var units = [["d", 86400, "h", 3600], ["h", 3600, "m", 60], ["m", 60, "s", 1]];
    for (var i = 0; i < units.length; i++) {
      var u = units[i];
      if (s >= u[1]) {
        var rest = Math.floor((s % u[1]) / u[3]);
        return Math.floor(s / u[1]) + u[0] + (rest ? " " + rest + u[2] : "");
      }
    }
    return s + "s";
  }
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("time[data-at]").forEach(function (t) {
      t.textContent = age(now - parseFloat(t.getAttribute("data-at")));
    });
  }
  function swap(el, prefix, value) {
    el.className = el.className.replace(new RegExp("\\b" + prefix + "\\S+", "g"), "").trim() + " " + prefix + value;
  }
  function role(el, name) { return el && el.querySelector('[data-role="' + name + '"]'); }
  var timer = null, fetched = 0;
  function refresh() { // at most one fetch every 2 s: a big page costs the server to render
    if (timer) return;
    timer = setTimeout(function () {
      timer = null;
      fetched = Date.now();
      fetch(location.href, { cache: "no-store", credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (text) {
          var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("main");
          var main = document.getElementById("main");
          if (fresh && main) { main.replaceWith(fresh); live = document.getElementById("live"); setLive(state); }
          tick();
        })
        .catch(function () {});
    }, Math.max(300, fetched + 2000 - Date.now()));
  }
  var state = "off";
  function setLive(s) {
    state = s;
    if (!live) return;
    live.className = "live " + s;
    live.textContent = s === "on" ? "live" : "reconnecting…";
  }
  setInterval(tick, 1000);
  setInterval(function () { if (!document.hidden) refresh(); }, 30000);
  if (!window.EventSource) return;
  var first = true;
  var source = new EventSource(new URL("watch", location.href));
  source.onopen = function () { setLive("on"); };
  source.onerror = function () { setLive("off"); };
  source.addEventListener("snapshot", function () {
    if (!first) refresh(); // a reconnect: catch up
    first = false;
  });
  source.addEventListener("group", function (e) {
    var d = JSON.parse(e.data);
    var card = document.getElementById("group-" + d.name);
    if (card) { swap(card, "st-", d.state); role(card, "state").textContent = d.state; }
    if (d.name === "health") {
      var top = document.getElementById("overall");
      swap(top, "st-", d.state); role(top, "state").textContent = d.state;
      document.title = document.title.replace(/^\S+/, d.state);
    }
    var banner = document.getElementById("banner");
    if (banner && d.state === "draining") {
      banner.hidden = false;
      banner.textContent = "This instance is draining: it is shutting down.";
    }
  });
  source.addEventListener("check", function (e) {
    var d = JSON.parse(e.data);
    var card = document.getElementById("check-" + d.name);
    if (card) {
      swap(card, "s-", d.status);
      role(card, "status").textContent = d.status;
      role(card, "message").textContent = d.message;
    }
    refresh();
  });
  source.addEventListener("draining", function () {
    var banner = document.getElementById("banner");
    if (banner) { banner.hidden = false; banner.textContent = "This instance is shutting down; reconnecting…"; }
  });
})();

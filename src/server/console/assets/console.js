// vigil console: live refresh by polling, and the live score chart (uPlot).
// Pages work without this script; it only keeps them fresh.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  function say(text) { if (status) status.textContent = text; }
  function clock() { return new Date().toLocaleTimeString(); }

  // Elements marked data-live are re-read from the same URL every 2 s and replaced,
  // unless the user is working inside one (focus) or the tab is hidden.
  var live = Array.prototype.slice.call(document.querySelectorAll("[data-live][id]"));
  if (live.length) {
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          live.forEach(function (el) {
            var fresh = doc.getElementById(el.id);
            if (fresh && !el.contains(document.activeElement) && fresh.innerHTML !== el.innerHTML) el.innerHTML = fresh.innerHTML;
          });
          say("live · updated " + clock());
        })
        .catch(function () { say("offline · retrying"); })
        .then(function () { busy = false; });
    }, 2000);
    say("live");
  }

  // The chart of one series: values with expected value and band, and scores with the
  // threshold; anomalous samples marked, incidents shaded.
  var el = document.getElementById("chart");
  if (!el || typeof uPlot === "undefined") return;
  var url = "/ui/scores/data?stage=" + encodeURIComponent(el.dataset.stage) + "&series=" + encodeURIComponent(el.dataset.series);
  var threshold = el.dataset.threshold !== undefined ? parseFloat(el.dataset.threshold) : null;
  var incidents = [];
  var summary = document.getElementById("chart-summary");
  function shade(u) {
    var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
    ctx.save();
    ctx.fillStyle = "rgba(232, 160, 154, 0.28)";
    incidents.forEach(function (i) {
      var a = u.valToPos(i.opened_at / 1000, "x", true);
      var b = u.valToPos((i.resolved_at || u.scales.x.max * 1000) / 1000, "x", true);
      ctx.fillRect(a, top, Math.max(2, b - a), h);
    });
    ctx.restore();
  }
  function opts(title, series, range, height) {
    return { title: title, width: Math.max(320, el.clientWidth - 8), height: height, series: series,
      scales: { y: range ? { range: range } : {} }, hooks: { drawClear: [shade] }, legend: { live: true } };
  }
  var valueChart = null, scoreChart = null;
  function draw(d) {
    var p = d.points;
    incidents = d.incidents || [];
    var x = p.map(function (q) { return q.ts / 1000; });
    var nul = function (v) { return v === null || v === undefined ? null : v; };
    var values = [x, p.map(function (q) { return q.value; }), p.map(function (q) { return nul(q.expected); }),
      p.map(function (q) { return nul(q.lower); }), p.map(function (q) { return nul(q.upper); }),
      p.map(function (q) { return q.anomalous ? q.value : null; })];
    var scores = [x, p.map(function (q) { return q.score; }), p.map(function () { return threshold; }),
      p.map(function (q) { return q.anomalous ? q.score : null; })];
    if (!valueChart) {
      var dot = { show: true, size: 7, fill: "#b3261e", stroke: "#b3261e" };
      valueChart = new uPlot(opts("value", [{}, { label: "value", stroke: "#1a56b8", width: 1.5 },
        { label: "expected", stroke: "#555", dash: [6, 4] }, { label: "lower", stroke: "#8fb3e8" }, { label: "upper", stroke: "#8fb3e8" },
        { label: "anomalous", stroke: "transparent", points: dot, paths: function () { return null; } }], null, 240), values, el);
      scoreChart = new uPlot(opts("score", [{}, { label: "score", stroke: "#0f8a82", width: 1.5 },
        { label: "threshold", stroke: "#b3261e", dash: [6, 4], show: threshold !== null },
        { label: "anomalous", stroke: "transparent", points: dot, paths: function () { return null; } }], [0, 1], 170), scores, el);
    } else {
      valueChart.setData(values);
      scoreChart.setData(scores);
    }
    var last = p[p.length - 1];
    if (summary && last) {
      summary.textContent = p.length + " points; last: value " + last.value.toFixed(3) + ", score " + last.score.toFixed(3) +
        (last.anomalous ? " (anomalous)" : " (normal)") + "; " + incidents.length + " incident(s) in view.";
    }
  }
  function poll() {
    if (document.hidden) return;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) { draw(d); el.dataset.loaded = "true"; say("live · updated " + clock()); })
      .catch(function () { say("offline · retrying"); });
  }
  window.addEventListener("resize", function () {
    var w = Math.max(320, el.clientWidth - 8);
    if (valueChart) valueChart.setSize({ width: w, height: 240 });
    if (scoreChart) scoreChart.setSize({ width: w, height: 170 });
  });
  poll();
  setInterval(poll, 2000);
})();

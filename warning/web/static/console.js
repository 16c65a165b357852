/* The console's public panels (issue 20), beside app.js (which owns the map, the live list and the detail):
 *  - delivery health without the token: GET /api/v1/delivery-health (per subscriber name and department:
 *    delivered, retrying, parked, last outcome class; never an id, endpoint or host);
 *  - the archive search: GET /api/v1/warnings with hazard, region, level, since, until, status (Beijing times
 *    typed, UTC sent), following its Link rel="next" cursor; a click opens the warning's detail;
 *  - the stations: GET /api/v1/stations/latest (latest values and a sparkline of the last days per station).
 * Everything from the server is inserted with textContent. */
(function () {
  "use strict";
  var I18N = window.EWS_I18N;
  var t = I18N.t;
  var LEVELS = ["blue", "yellow", "orange", "red"];
  var state = { health: null, archive: [], next: null, stations: null };

  function $(id) { return document.getElementById(id); }
  function E() { return window.EWS; }

  // ---------------------------------------------------------------------------------- delivery health
  function loadPublicHealth() {
    fetch("/api/v1/delivery-health", { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (d) { state.health = d; renderPublicHealth(); })
      .catch(function (err) { $("public-health-status").textContent = err.message; });
  }

  function renderPublicHealth() {
    var d = state.health;
    if (!d) return;
    var el = E().el, tbody = $("public-health-body");
    tbody.textContent = "";
    (d.subscribers || []).forEach(function (h) {
      var last = h.last_outcome ? el("span", { className: "result-" + (h.last_result || "") }, h.last_outcome) : "—";
      tbody.appendChild(el("tr", { "data-name": h.name, "data-department": h.department },
        el("td", { text: h.name }), el("td", { text: h.department }),
        el("td", { className: "n-delivered", text: String(h.delivered) }),
        el("td", { className: "n-retrying" + (h.retrying ? " result-retry" : ""), text: String(h.retrying) }),
        el("td", { className: "n-parked" + (h.parked ? " result-dead" : ""), text: String(h.parked) }),
        el("td", null, last, h.last_time ? " · " : "", h.last_time ? E().timeEl(h.last_time) : null)));
    });
    var n = (d.subscribers || []).length;
    $("public-health-table").hidden = n === 0;
    $("public-health-status").textContent = n ? "" : t("no_subs");
  }
  var timer = null;
  function reloadPublicHealth() {  // throttled: at most one refresh every 2 s however many receipts arrive
    if (timer) return;
    timer = setTimeout(function () { timer = null; loadPublicHealth(); }, 2000);
  }

  // ------------------------------------------------------------------------------------------ archive
  function fillArchiveForm(info) {
    var hz = $("archive-hazard"), lv = $("archive-level"), keepHz = hz.value, keepLv = lv.value;
    while (hz.options.length > 1) hz.remove(1);
    (info && info.hazards || []).forEach(function (h) { hz.appendChild(new Option(I18N.hazard(h), h)); });
    while (lv.options.length > 1) lv.remove(1);
    LEVELS.forEach(function (l) { lv.appendChild(new Option("≥ " + I18N.level(l), l)); });
    hz.value = keepHz;
    lv.value = keepLv;
  }

  function fillRegions() {  // the datalist: prefectures and counties by code with both names
    var regions = E().state.regions, dl = $("region-options");
    dl.textContent = "";
    Object.keys(regions).sort().forEach(function (code) {
      var r = regions[code];
      dl.appendChild(new Option(r.name_zh + " " + r.name, code));
    });
  }

  function regionCode(text) {  // a code as typed, or the code of a region named so (Chinese or English)
    text = (text || "").trim();
    if (!text || /^\d{6}$/.test(text)) return text;
    var regions = E().state.regions, low = text.toLowerCase(), hit = null;
    Object.keys(regions).forEach(function (code) {
      var r = regions[code];
      if (!hit && (r.name_zh === text || (r.name || "").toLowerCase() === low ||
                   (r.name_zh || "").indexOf(text) === 0)) hit = code;
    });
    return hit || text;  // unknown: the API answers 400 naming the nearest codes
  }

  function beijingToUtc(local) {  // "2026-07-14T18:00" typed in Beijing time -> "2026-07-14T10:00:00Z"
    if (!local) return "";
    var ms = Date.parse(local + (local.length === 16 ? ":00" : "") + "+08:00");
    return isNaN(ms) ? "" : new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
  }

  function search(ev) {
    if (ev) ev.preventDefault();
    var q = new URLSearchParams({ limit: "50" });
    var f = $("archive-form").elements;
    if (f.hazard.value) q.set("hazard", f.hazard.value);
    var region = regionCode(f.region.value);
    if (region) q.set("region", region);
    if (f.level.value) q.set("level", f.level.value);
    if (beijingToUtc(f.since.value)) q.set("since", beijingToUtc(f.since.value));
    if (beijingToUtc(f.until.value)) q.set("until", beijingToUtc(f.until.value));
    q.set("status", f.status.value || "actual");
    state.archive = [];
    state.searched = true;
    fetchPage("/api/v1/warnings?" + q.toString());
  }

  function fetchPage(url) {
    $("archive-status-line").textContent = "…";
    fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body && body.error) || "HTTP " + r.status);
        var link = r.headers.get("Link") || "", m = /<([^>]+)>;\s*rel="next"/.exec(link);
        // the link's path only: EWS_PUBLIC_URL may name another origin than this page's (CSP connect-src 'self')
        state.next = m ? new URL(m[1], location.href).pathname + new URL(m[1], location.href).search : null;
        state.archive = state.archive.concat(body || []);
        renderArchive();
      });
    }).catch(function (err) { $("archive-status-line").textContent = err.message; });
  }

  function renderArchive() {
    if (!state.searched) return;
    var el = E().el, ul = $("archive-list");
    ul.textContent = "";
    state.archive.forEach(function (e) {
      var li = el("li", { "data-warning-id": e.warning_id, "data-level": e.level, "data-hazard": e.hazard,
                          "data-region": e.region_code, "data-msg-type": e.msg_type },
        el("span", { className: "chip", "data-level": e.level }),
        el("span", { className: "title", text: E().headlineOf(e) }),
        el("span", { className: "meta" }, I18N.word(e.msg_type) + " · " + I18N.hazard(e.hazard) + " " + I18N.level(e.level) +
          " · " + E().regionName(e.region_code) + " " + e.region_code + " · " + t("sent") + " ", E().timeEl(e.sent)));
      li.addEventListener("click", function () { E().selectWarning(e.warning_id); });
      ul.appendChild(li);
    });
    $("archive-more").hidden = !state.next;
    $("archive-status-line").textContent = state.archive.length ? state.archive.length + " " + t("results")
      : t("no_results");
    $("archive-status-line").setAttribute("data-count", String(state.archive.length));
  }

  // ------------------------------------------------------------------------------------------ stations
  function loadStations() {
    fetch("/api/v1/stations/latest", { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (d) { state.stations = d; renderStations(); })
      .catch(function (err) { $("stations-status").textContent = err.message; });
  }

  function spark(days, key, bars) {  // a small SVG of one daily quantity over the last days
    var svg = E().svg, w = 90, h = 22, vals = days.map(function (d) { return d[key]; });
    var nums = vals.filter(function (v) { return v !== null && v !== undefined; });
    var root = svg("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, "class": "spark",
                            "data-quantity": key, "data-points": String(nums.length) });
    if (!nums.length) return root;
    var lo = bars ? 0 : Math.min.apply(null, nums), hi = Math.max.apply(null, nums);
    var span = hi - lo || 1, step = vals.length > 1 ? (w - 4) / (vals.length - 1) : 0;
    var pts = [];
    vals.forEach(function (v, i) {
      if (v === null || v === undefined) return;
      var x = 2 + i * step, y = h - 2 - (v - lo) / span * (h - 4);
      if (bars) root.appendChild(svg("rect", { x: (x - 2).toFixed(1), y: y.toFixed(1), width: 4,
                                                height: Math.max(0.5, h - 2 - y).toFixed(1) }));
      else pts.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    if (!bars && pts.length > 1) root.appendChild(svg("polyline", { points: pts.join(" ") }));
    if (!bars && pts.length === 1) {  // one day so far: a dot
      var xy = pts[0].split(",");
      root.appendChild(svg("circle", { cx: xy[0], cy: xy[1], r: 2.5, fill: "#17324d" }));
    }
    var title = svg("title", {});
    title.textContent = days.map(function (d) { return d.day + " " + (d[key] === null ? "—" : d[key]); }).join("\n");
    root.appendChild(title);
    return root;
  }

  // what a station row shows: [summary key, label, unit] (today's extremes in Beijing days, the latest "now" values)
  var VALUES = [["tmax_c", "max", "°C"], ["tmin_c", "min", "°C"], ["precip_mm", "rain", "mm"],
                ["wind_ms", "wind", "m/s"], ["gust_max_ms", "gust", "m/s"], ["visibility_m", "vis", "m"],
                ["rh_pct", "RH", "%"]];

  function fmt(v, unit) { return v === null || v === undefined ? "—" : Number(v).toFixed(1) + " " + unit; }

  function renderStations() {
    var d = state.stations;
    if (!d) return;
    var el = E().el, tbody = $("stations-body"), names = {};
    (E().state.stations || []).forEach(function (s) { names[s.station_id] = s; });
    tbody.textContent = "";
    (d.stations || []).forEach(function (s) {
      var reg = names[s.station_id] || {}, l = s.latest || {};
      var name = I18N.lang === "zh" ? reg.name_zh || reg.name : reg.name || reg.name_zh;
      tbody.appendChild(el("tr", { "data-station": s.station_id },
        el("td", null, el("strong", { text: name || s.station_id }), " " + s.station_id, el("br"),
          s.time ? E().timeEl(s.time) : "—"),
        el("td", { text: VALUES.map(function (v) {
          var x = l[v[0]];
          return x === null || x === undefined ? null : (v[1] ? v[1] + " " : "") + fmt(x, v[2]);
        }).filter(Boolean).join(" · ") || t("no_reading") }),
        el("td", { title: "Tmax" }, spark(s.days || [], "tmax_c", false)),
        el("td", { title: "rain" }, spark(s.days || [], "precip_mm", true))));
    });
    $("stations-status").textContent = (d.stations || []).length ? "" : t("no_reading");
    $("stations-table").hidden = !(d.stations || []).length;
  }

  // ------------------------------------------------------------------------------------------ start
  function start() {
    $("archive-form").addEventListener("submit", search);
    $("archive-more").addEventListener("click", function () { if (state.next) fetchPage(state.next); });
    var info = null;
    fetch("/api/v1/info").then(function (r) { return r.json(); })
      .then(function (i) { info = i; fillArchiveForm(info); }).catch(function () { fillArchiveForm(null); });
    var waitMap = setInterval(function () {  // the region names come with the map's shapes
      if (E() && E().state.mapLoaded) { clearInterval(waitMap); fillRegions(); }
    }, 200);
    loadPublicHealth();
    loadStations();
    setInterval(loadPublicHealth, 30000);
    setInterval(loadStations, 15000);  // the summaries change at most every EWS_STATION_VALUES_S (60 s)
    document.addEventListener("ews:receipt", reloadPublicHealth);
    I18N.onChange(function () {
      fillArchiveForm(info);
      renderPublicHealth();
      renderArchive();
      renderStations();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

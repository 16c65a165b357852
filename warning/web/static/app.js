/* Operators' dashboard: plain browser JavaScript, no build step, no external library.
 *
 * Data: GET /api/v1/regions (GeoJSON: region tree + shapes), GET /api/v1/stations, the live feed
 * GET /api/v1/events (Server-Sent Events: snapshot, warning, receipt), GET /api/v1/warnings?msg_type=cancel&since=
 * for the warnings ended in the last day ("show ended"), GET /api/v1/warnings/{id} for a
 * warning's history and deliveries, GET /api/v1/subscribers/health and POST /api/v1/dead-letters/redrive
 * with the operator's token (kept in sessionStorage of this tab, sent only in the Authorization header).
 * Everything from the server is inserted with textContent, never as HTML.
 */
(function () {
  "use strict";

  var COLOURS = { blue: "#0070f0", yellow: "#ffd400", orange: "#ff8000", red: "#e60000" };
  var RANK = { blue: 1, yellow: 2, orange: 3, red: 4 };
  var LEVEL_ZH = { blue: "蓝色", yellow: "黄色", orange: "橙色", red: "红色" };
  var UNITS = { tmax_day: "°C", tmin_day: "°C", ground_tmin_day: "°C", tmin_drop_24h: "°C", tmin_drop_48h: "°C",
                wind_max_day: "m/s", gust_max_day: "m/s", wind_now: "m/s", visibility: "m", rh_now: "%",
                api_mm: "mm" };
  var NO_WARNING_FILL = "#f7f8fa";
  var TOKEN_KEY = "ews.operatorToken";
  var SVG_NS = "http://www.w3.org/2000/svg";

  var state = {
    regions: {},          // code -> properties (code, name, name_zh, level, parent_code)
    countyEls: {},        // county code -> <path>
    prefEls: {},          // prefecture code -> outline <path>
    stations: [],         // from /api/v1/stations
    stationEls: {},       // station_id -> <circle>
    gAreas: null,         // the layer of grid-based warnings' areas (the affected cells over the county)
    project: null,        // [lon, lat] -> [x, y]
    warnings: new Map(),  // "region:hazard[:status]" -> latest WarningEvent (as the server keeps it)
    seen: new Set(),      // event ids already shown (to flash new ones)
    offsetMs: 0,          // server clock - browser clock
    selected: null,       // selected warning_id
    receipts: [],
    snapshotLoaded: false,
    mapLoaded: false,
  };
  window.EWS = { colours: COLOURS, state: state };

  // ------------------------------------------------------------------------------------------ helpers
  function $(id) { return document.getElementById(id); }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "className") node.className = attrs[k];
        else if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function serverNowIso() {
    return new Date(Date.now() + state.offsetMs).toISOString().slice(0, 19) + "Z";
  }

  function fmtTime(iso) {  // Beijing time, what the bureau's operators read
    if (!iso) return "—";
    var t = Date.parse(iso);
    if (isNaN(t)) return String(iso);
    return new Date(t + 8 * 3600 * 1000).toISOString().slice(0, 16).replace("T", " ") + " BJT";
  }

  function fmtValue(v, quantity) {  // "tmax_day 40.6 °C"
    if (v === null || v === undefined) return "—";
    var n = Number(v);
    var unit = UNITS[quantity] || (/^rain_/.test(quantity || "") ? "mm" : "");
    return (quantity ? quantity + " " : "") + (isNaN(n) ? String(v) : n.toFixed(1)) + (unit ? " " + unit : "");
  }

  function isRollup(e) { return e.region_level === "prefecture"; }

  // exercise (drills, demos) and test warnings: their own chains, shown hatched and labelled, and hideable
  var STATUS_LABEL = { exercise: "EXERCISE 演练", test: "TEST 测试" };
  function statusOf(e) { return e.status || "actual"; }
  function isDrill(e) { return statusOf(e) !== "actual"; }
  function showDrills() { var box = $("show-drills"); return !box || box.checked; }

  // an actual warning ends at its expiry on the wall clock; a drill's chain runs on its replayed data's clock
  // and ends with its cancel (as the server's view judges it)
  function isActive(e) {
    return e.msg_type !== "cancel" && (isDrill(e) || e.expires > serverNowIso());
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  // ---------------------------------------------------------------------------------------------- map
  function ringsOf(geometry) {
    if (!geometry) return [];
    if (geometry.type === "Polygon") return geometry.coordinates;
    if (geometry.type === "MultiPolygon") {
      return geometry.coordinates.reduce(function (acc, poly) { return acc.concat(poly); }, []);
    }
    return [];
  }

  function pathData(geometry, project) {
    return ringsOf(geometry).map(function (ring) {
      return ring.map(function (p, i) {
        var xy = project(p);
        return (i ? "L" : "M") + xy[0].toFixed(2) + "," + xy[1].toFixed(2);
      }).join("") + "Z";
    }).join("");
  }

  function buildMap(fc) {
    var minLon = Infinity, maxLon = -Infinity, minLat = Infinity, maxLat = -Infinity;
    fc.features.forEach(function (f) {
      state.regions[f.properties.code] = f.properties;
      if (f.properties.level !== "county") return;
      ringsOf(f.geometry).forEach(function (ring) {
        ring.forEach(function (p) {
          if (p[0] < minLon) minLon = p[0];
          if (p[0] > maxLon) maxLon = p[0];
          if (p[1] < minLat) minLat = p[1];
          if (p[1] > maxLat) maxLat = p[1];
        });
      });
    });
    if (!isFinite(minLon)) { $("map").textContent = "No region shapes available."; return; }
    // equirectangular, scaled by cos(mid-latitude) so Gansu is not stretched east-west
    var k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180), S = 100, pad = 20;
    var project = function (p) { return [(p[0] - minLon) * k * S + pad, (maxLat - p[1]) * S + pad]; };
    state.project = project;
    var w = (maxLon - minLon) * k * S + 2 * pad, h = (maxLat - minLat) * S + 2 * pad;
    var root = svg("svg", { viewBox: "0 0 " + w.toFixed(0) + " " + h.toFixed(0), role: "img",
                            "aria-label": "Gansu counties", preserveAspectRatio: "xMidYMid meet" });
    root.appendChild(hatchPatterns());
    var gCounties = svg("g", { "class": "counties" });
    var gPrefs = svg("g", { "class": "prefectures" });
    var gAreas = svg("g", { "class": "areas" });
    var gStations = svg("g", { "class": "stations" });
    fc.features.forEach(function (f) {
      var p = f.properties;
      if (!f.geometry) return;
      if (p.level === "county") {
        var path = svg("path", { d: pathData(f.geometry, project), "class": "county", "data-code": p.code,
                                 "data-parent": p.parent_code || "", fill: NO_WARNING_FILL,
                                 "fill-rule": "evenodd" });
        var title = svg("title", {});
        title.textContent = p.name_zh + " " + p.name + " (" + p.code + ")";
        path.appendChild(title);
        path.addEventListener("mouseenter", function () { hoverCounty(p.code); });
        path.addEventListener("click", function () { clickCounty(p.code); });
        gCounties.appendChild(path);
        state.countyEls[p.code] = path;
      } else if (p.level === "prefecture") {
        var outline = svg("path", { d: pathData(f.geometry, project), "class": "prefecture",
                                    "data-code": p.code, "fill-rule": "evenodd" });
        gPrefs.appendChild(outline);
        state.prefEls[p.code] = outline;
      }
    });
    root.appendChild(gCounties);
    root.appendChild(gAreas);
    root.appendChild(gPrefs);
    root.appendChild(gStations);
    var box = $("map");
    box.textContent = "";
    box.appendChild(root);
    state.gStations = gStations;
    state.gAreas = gAreas;
    state.mapLoaded = true;
    drawStations();
    render();
  }

  function drawStations() {
    if (!state.project || !state.gStations || !state.stations.length) return;
    state.gStations.textContent = "";
    state.stationEls = {};
    state.stations.forEach(function (s) {
      var xy = state.project([s.longitude, s.latitude]);
      var c = svg("circle", { cx: xy[0].toFixed(2), cy: xy[1].toFixed(2), r: "9", "class": "station",
                              "data-station": s.station_id });
      var title = svg("title", {});
      title.textContent = s.name_zh + " " + s.name + " (" + s.station_id + ")";
      c.appendChild(title);
      c.addEventListener("mouseenter", function () { hoverStation(s); });
      state.gStations.appendChild(c);
      state.stationEls[s.station_id] = c;
    });
    render();
  }

  // ------------------------------------------------------------------------------------ the warnings
  function activeWarnings() {  // what is shown: exercise and test warnings only while "show drills" is on
    var out = [];
    var drills = showDrills();
    state.warnings.forEach(function (e) { if (isActive(e) && (drills || !isDrill(e))) out.push(e); });
    return out;
  }

  // counties: the highest level of the warnings issued for the county itself; prefectures: their roll-up
  function regionLevels(active) {
    var levels = {};
    active.forEach(function (e) {
      var c = e.region_code;
      if (!levels[c] || RANK[e.level] > RANK[levels[c]]) levels[c] = e.level;
    });
    return levels;
  }

  // one diagonal-stripe pattern per level: a county with only exercise or test warnings is filled with it
  function hatchPatterns() {
    var defs = svg("defs", {});
    Object.keys(COLOURS).forEach(function (level) {
      var pat = svg("pattern", { id: "hatch-" + level, patternUnits: "userSpaceOnUse", width: "8", height: "8",
                                 patternTransform: "rotate(45)" });
      pat.appendChild(svg("rect", { width: "8", height: "8", fill: "#ffffff" }));
      pat.appendChild(svg("rect", { width: "4", height: "8", fill: COLOURS[level] }));
      defs.appendChild(pat);
    });
    return defs;
  }

  function stationReadings(active) {
    var out = {};
    active.forEach(function (e) {
      (e.stations || []).forEach(function (s) {
        var prev = out[s.station_id];
        if (!prev || RANK[s.level] > RANK[prev.level]) {
          out[s.station_id] = { level: s.level, value: s.value, quantity: s.quantity, time: s.time,
                                hazard: e.hazard };
        }
      });
    });
    return out;
  }

  function render() {
    var active = activeWarnings();
    var live = active.filter(function (e) { return !isDrill(e); });
    var levels = regionLevels(live);
    var drillLevels = regionLevels(active.filter(isDrill));
    Object.keys(state.countyEls).forEach(function (code) {
      var path = state.countyEls[code];
      var level = levels[code], drill = drillLevels[code];
      // a live warning's solid colour always wins over a drill's hatching
      path.setAttribute("fill", level ? COLOURS[level] : drill ? "url(#hatch-" + drill + ")" : NO_WARNING_FILL);
      if (level) path.setAttribute("data-level", level); else path.removeAttribute("data-level");
      if (!level && drill) path.setAttribute("data-drill-level", drill); else path.removeAttribute("data-drill-level");
    });
    Object.keys(state.prefEls).forEach(function (code) {
      var level = levels[code];  // (roll-up outlines: live warnings only)
      if (level) state.prefEls[code].setAttribute("data-level", level);
      else state.prefEls[code].removeAttribute("data-level");
    });
    drawAreas(live);
    var readings = stationReadings(active);
    Object.keys(state.stationEls).forEach(function (sid) {
      var c = state.stationEls[sid];
      var r = readings[sid];
      c.setAttribute("fill", r ? COLOURS[r.level] : "#ffffff");
      if (r) c.setAttribute("data-level", r.level); else c.removeAttribute("data-level");
      c.setAttribute("r", r ? "16" : "9");
    });
    renderList(active);
  }

  // A county warning whose level only a forecast grid holds carries the affected cells (area_polygons, CAP
  // <area>): the county is tinted and the cells drawn over it in the level's colour.
  function drawAreas(live) {
    if (!state.gAreas || !state.project) return;
    var g = state.gAreas;
    while (g.firstChild) g.removeChild(g.firstChild);
    var partial = {};
    var rank = { blue: 1, yellow: 2, orange: 3, red: 4 };
    live.slice().sort(function (a, b) { return (rank[a.level] || 0) - (rank[b.level] || 0); }).forEach(function (e) {
      if (isRollup(e) || !e.area_polygons || !e.area_polygons.length) return;
      partial[e.region_code] = true;
      var d = e.area_polygons.map(function (poly) {
        return poly.map(function (p, i) {
          var xy = state.project([p[1], p[0]]);
          return (i ? "L" : "M") + xy[0].toFixed(1) + " " + xy[1].toFixed(1);
        }).join("") + "Z";
      }).join("");
      var path = svg("path", { d: d, "class": "grid-area", "data-level": e.level, "data-region": e.region_code,
                               "data-hazard": e.hazard, "data-warning-id": e.warning_id, fill: COLOURS[e.level] });
      var title = svg("title", {});
      var share = e.grid && e.grid.share != null ? Math.round(100 * e.grid.share) + " % of the county" : "";
      title.textContent = (e.headline_en || "") + (share ? " (grid forecast: " + share + ")" : "");
      path.appendChild(title);
      g.appendChild(path);
    });
    Object.keys(state.countyEls).forEach(function (code) {
      if (partial[code]) state.countyEls[code].setAttribute("data-partial", "1");
      else state.countyEls[code].removeAttribute("data-partial");
    });
  }

  function renderList(active) {
    var showEnded = $("show-ended").checked;
    var drills = showDrills();
    var items = showEnded ? Array.from(state.warnings.values()).filter(function (e) {
      return drills || !isDrill(e);
    }) : active;
    items.sort(function (a, b) {
      var aa = isActive(a) ? 1 : 0, ba = isActive(b) ? 1 : 0;
      if (aa !== ba) return ba - aa;
      if (RANK[a.level] !== RANK[b.level]) return RANK[b.level] - RANK[a.level];
      if (isRollup(a) !== isRollup(b)) return isRollup(a) ? 1 : -1;
      return a.sent < b.sent ? 1 : a.sent > b.sent ? -1 : 0;
    });
    var list = $("warning-list");
    list.textContent = "";
    items.forEach(function (e) {
      var ended = !isActive(e);
      var top = (e.stations || [])[0];
      var li = el("li", { "data-warning-id": e.warning_id, "data-level": e.level, "data-region": e.region_code,
                          "data-msg-type": e.msg_type, "data-region-level": e.region_level || "county",
                          "data-status": statusOf(e),
                          className: (ended ? "ended " : "") + (isDrill(e) ? "drill " : "") +
                            (state.selected === e.warning_id ? "selected" : "") },
        el("span", { className: "chip" + (isDrill(e) ? " hatched" : ""), "data-level": e.level }),
        el("span", { className: "title", text: e.headline_zh || "" },
          isDrill(e) ? el("span", { className: "tag status-tag", text: STATUS_LABEL[statusOf(e)] || statusOf(e) })
            : null,
          isRollup(e) ? el("span", { className: "tag", text: "prefecture roll-up" }) : null),
        el("span", { className: "meta", text: (e.headline_en || "") }),
        el("span", { className: "meta", text: e.msg_type + " · " + (e.region_name_zh || "") + " " + e.region_code +
          (top ? " · " + (top.station_name || top.station_id) + " " + fmtValue(top.value, top.quantity) : "") +
          (e.grid ? " · grid " + Math.round(100 * (e.grid.share || 0)) + " % of the county" : "") +
          " · sent " + fmtTime(e.sent) + (ended ? " · ended" : " · until " + fmtTime(e.expires)) }));
      if (state.snapshotLoaded && !state.seen.has(e.id)) li.classList.add("fresh");
      li.addEventListener("click", function () { selectWarning(e.warning_id); });
      list.appendChild(li);
    });
    items.forEach(function (e) { state.seen.add(e.id); });
    $("warning-count").textContent = String(active.filter(function (e) { return !isDrill(e); }).length);
    $("no-warnings").hidden = items.length > 0;
  }

  function applyWarning(e) {
    var key = e.region_code + ":" + e.hazard + (isDrill(e) ? ":" + statusOf(e) : "");
    var latest = state.warnings.get(key);
    if (!latest || latest.warning_id !== e.warning_id || latest.seq <= e.seq) state.warnings.set(key, e);
  }

  function warningsAt(code) {  // the county's own warnings, then its prefecture's roll-ups
    var r = state.regions[code];
    var list = activeWarnings().filter(function (e) {
      return e.region_code === code || (r && e.region_code === r.parent_code);
    });
    list.sort(function (a, b) {
      if (isRollup(a) !== isRollup(b)) return isRollup(a) ? 1 : -1;
      return RANK[b.level] - RANK[a.level];
    });
    return list;
  }

  function hoverCounty(code) {
    var r = state.regions[code];
    var here = warningsAt(code);
    var parent = r && state.regions[r.parent_code];
    $("hover").textContent = (r ? r.name_zh + " " + r.name + " (" + code + ")" : code) +
      (parent ? " · " + parent.name_zh : "") + " · " +
      (here.length ? here.map(function (e) {
        return e.hazard + " " + e.level + (isRollup(e) ? " (prefecture)" : "") +
          (isDrill(e) ? " (" + (STATUS_LABEL[statusOf(e)] || statusOf(e)) + ")" : "");
      }).join(", ") : "no active warning");
  }

  function hoverStation(s) {
    var r = stationReadings(activeWarnings())[s.station_id];
    $("hover").textContent = s.name_zh + " " + s.name + " (" + s.station_id + "), " + s.elevation_m + " m · " +
      (r ? r.hazard + " " + fmtValue(r.value, r.quantity) + " at " + fmtTime(r.time) + " (" + r.level + ")"
         : "no reading in an active warning");
  }

  function clickCounty(code) {
    var here = warningsAt(code);
    if (here.length) selectWarning(here[0].warning_id);
  }

  // ---------------------------------------------------------------------------------------- detail
  function selectWarning(id) {
    state.selected = id;
    $("detail-panel").hidden = false;
    $("detail-title").textContent = id;
    $("detail-cap").setAttribute("href", "/api/v1/warnings/" + encodeURIComponent(id) + ".cap");
    $("detail-json").setAttribute("href", "/api/v1/warnings/" + encodeURIComponent(id));
    Object.keys(state.countyEls).forEach(function (c) { state.countyEls[c].classList.remove("selected"); });
    renderList(activeWarnings());
    loadDetail();
  }

  function loadDetail() {
    var id = state.selected;
    if (!id) return;
    // no-cache: revalidate (ETag) rather than take the 30 s cached copy: a receipt or acknowledgement changed it
    fetch("/api/v1/warnings/" + encodeURIComponent(id), { headers: { Accept: "application/json" }, cache: "no-cache" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (d) { if (state.selected === id) renderDetail(d); })
      .catch(function (err) { $("detail-headline").textContent = "Cannot load " + id + ": " + err.message; });
  }
  var reloadDetail = debounce(loadDetail, 300);

  function renderDetail(d) {
    var events = d.events || [];
    var last = events[events.length - 1];
    $("detail-headline").textContent = last ? last.headline_zh + " — " + last.headline_en : "";
    if (last && state.countyEls[last.region_code]) state.countyEls[last.region_code].classList.add("selected");
    var audit = $("detail-audit");
    audit.textContent = "";
    (d.audit || []).forEach(function (a) {
      var changed = Object.keys(a.changes || {});
      audit.appendChild(el("li", { "data-action": a.action },
        el("span", { className: "type", text: a.action }), " by ", el("strong", { text: a.by || "?" }),
        " · " + fmtTime(a.at) + " · " + (a.msg_type || "") + " " + (a.level || "") +
        (changed.length ? " · edited: " + changed.join(", ") : "") + (a.reason ? " · reason: " + a.reason : "")));
    });
    $("detail-no-audit").hidden = (d.audit || []).length > 0;
    var ol = $("detail-history");
    ol.textContent = "";
    events.forEach(function (e) {
      var stations = (e.stations || []).map(function (s) {
        return (s.station_name || s.station_id) + " " + fmtValue(s.value, s.quantity) + " (" + s.level +
          (s.basis && s.basis !== "observed" ? ", " + s.basis : "") + ")";
      }).join(", ");
      ol.appendChild(el("li", { "data-msg-type": e.msg_type },
        el("span", { className: "chip", "data-level": e.level }), " ",
        el("span", { className: "type", text: e.msg_type }), " ",
        el("span", { text: (LEVEL_ZH[e.level] || e.level) + " " + e.level + " · " + e.cma_code + " · " + e.severity }),
        el("div", { className: "meta", text: "sent " + fmtTime(e.sent) + " · onset " + fmtTime(e.onset) +
          " · expires " + fmtTime(e.expires) + " · seq " + e.seq }),
        stations ? el("div", { className: "meta", text: "stations: " + stations }) : null,
        e.instruction_zh ? el("div", { className: "meta", text: e.instruction_zh }) : null));
    });
    var known = $("detail-received");
    known.textContent = "";
    (d.received || []).forEach(function (w) {
      known.appendChild(el("tr", { "data-subscription": w.subscription_id },
        el("td", { text: w.name || String(w.subscription_id).slice(0, 8), title: w.subscription_id }),
        el("td", { text: w.department || "" }),
        el("td", { text: w.delivered_at ? fmtTime(w.delivered_at) : "—", title: w.delivered_at || "" }),
        el("td", { className: w.acknowledged_at ? "acked" : "not-acked",
                   text: w.acknowledged_at ? fmtTime(w.acknowledged_at) : "not acknowledged",
                   title: w.acknowledged_at || "" })));
    });
    $("detail-no-received").hidden = (d.received || []).length > 0;
    var tbody = $("detail-deliveries");
    tbody.textContent = "";
    var deliveries = (d.deliveries || []).slice().sort(function (a, b) { return a.time < b.time ? 1 : -1; });
    deliveries.forEach(function (r) {
      tbody.appendChild(el("tr", null,
        el("td", { text: fmtTime(r.time), title: r.time }), el("td", { text: r.department }),
        el("td", { text: String(r.subscription_id).slice(0, 8), title: r.subscription_id }), el("td", { text: r.type }), el("td", { text: String(r.attempt) }),
        el("td", { className: "result-" + r.result, text: r.result }),
        el("td", { text: r.status === null || r.status === undefined ? "—" : String(r.status) }),
        el("td", { text: r.latency_s === null || r.latency_s === undefined ? "—" : (r.latency_s * 1000).toFixed(0) + " ms" }),
        el("td", { text: r.error || "" })));
    });
    $("detail-no-deliveries").hidden = deliveries.length > 0;
  }

  // ----------------------------------------------------------------------------------- subscribers
  function authHeaders() { return { Authorization: "Bearer " + token(), Accept: "application/json" }; }

  function loadHealth() {
    if (!token()) {
      $("subs-table").hidden = true;
      $("redrive").disabled = true;
      $("subs-status").textContent = "Enter the operator token to see subscribers.";
      return;
    }
    fetch("/api/v1/subscribers/health", { headers: authHeaders(), cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) {
          sessionStorage.removeItem(TOKEN_KEY);
          throw new Error("token rejected (401); enter it again");
        }
        return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status));
      })
      .then(renderHealth)
      .catch(function (err) {
        $("subs-table").hidden = true;
        $("redrive").disabled = !token();
        $("subs-status").textContent = "Subscribers: " + err.message;
      });
  }
  var reloadHealth = debounce(loadHealth, 1500);

  function renderHealth(d) {
    var subs = d.subscribers || [];
    var tbody = $("subs-body");
    tbody.textContent = "";
    subs.forEach(function (h) {
      tbody.appendChild(el("tr", { "data-subscription-id": h.subscription_id, "data-status": h.status },
        el("td", { text: h.name, title: h.subscription_id }), el("td", { text: h.department }),
        el("td", { className: "status-" + h.status, text: h.status }),
        el("td", { text: h.active ? "yes" : "paused" }),
        el("td", { text: fmtTime(h.last_success), title: h.last_success || "" }),
        el("td", { text: String(h.consecutive_failures) }),
        el("td", { text: h.last_error ? h.last_error + " (" + fmtTime(h.last_error_time) + ")" : "" }),
        el("td", { text: String(h.dead_letters) })));
    });
    $("subs-table").hidden = subs.length === 0;
    $("redrive").disabled = false;
    $("subs-status").textContent = subs.length ? subs.length + " subscriptions · health from the last " +
      d.receipts_window + " delivery attempts on this worker · " + fmtTime(d.time) : "No subscriptions.";
  }

  function redrive() {
    var out = $("redrive-result");
    out.textContent = "redriving…";
    fetch("/api/v1/dead-letters/redrive", {
      method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()), body: "{}",
    }).then(function (r) {
      return r.text().then(function (text) {
        out.textContent = "HTTP " + r.status + " " + r.statusText + (text ? ": " + text.slice(0, 300) : "");
        out.setAttribute("data-status", String(r.status));
        loadHealth();
      });
    }).catch(function (err) { out.textContent = "request failed: " + err.message; });
  }

  function logReceipt(r) {
    state.receipts.unshift(r);
    state.receipts.length = Math.min(state.receipts.length, 50);
    renderReceipts();
  }

  function renderReceipts() {
    var ul = $("receipt-log");
    ul.textContent = "";
    state.receipts.forEach(function (r) {
      ul.appendChild(el("li", null, fmtTime(r.time) + " " + r.department + " ",
        el("span", { className: "result-" + r.result, text: r.result }),
        " " + r.type + " #" + r.attempt + (r.status ? " HTTP " + r.status : "") + (r.error ? " " + r.error : "") +
        " · " + String(r.warning_id || "").slice(0, 8)));
    });
  }

  // Warnings that ended within the last day, from the warnings list (GET /api/v1/warnings with filters): the
  // SSE snapshot holds only the newest ones. Each is the latest event of its chain; a newer one seen live wins.
  function loadEnded() {
    var since = new Date(Date.now() + state.offsetMs - 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    var url = "/api/v1/warnings?status=all&msg_type=cancel&limit=500&since=" + encodeURIComponent(since);
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (events) {
        events.forEach(function (e) {
          var key = e.region_code + ":" + e.hazard + (isDrill(e) ? ":" + statusOf(e) : "");
          var latest = state.warnings.get(key);
          if (!latest || latest.sent < e.sent) state.warnings.set(key, e);
        });
        render();
      })
      .catch(function () { /* the live list still shows what the snapshot had */ });
  }

  // ----------------------------------------------------------------------------------------- live feed
  function connect() {
    var conn = $("conn");
    var es = new EventSource("/api/v1/events");
    es.onopen = function () { conn.dataset.state = "live"; conn.textContent = "live"; };
    es.onerror = function () { conn.dataset.state = "error"; conn.textContent = "reconnecting…"; };
    es.addEventListener("snapshot", function (ev) {
      var snap = JSON.parse(ev.data);
      state.offsetMs = Date.parse(snap.server_time) - Date.now();
      state.warnings = new Map();
      (snap.warnings || []).slice().reverse().forEach(applyWarning);
      state.receipts = (snap.receipts || []).slice().reverse();
      renderReceipts();
      render();
      state.snapshotLoaded = true;
      document.body.setAttribute("data-live", "1");
      if (state.selected) reloadDetail();
    });
    es.addEventListener("warning", function (ev) {
      var e = JSON.parse(ev.data);
      applyWarning(e);
      render();
      if (e.warning_id === state.selected) reloadDetail();
    });
    es.addEventListener("ack", function (ev) {  // a department acknowledged: the detail's "who knows"
      var a = JSON.parse(ev.data);
      if (a.warning_id === state.selected) reloadDetail();
    });
    es.addEventListener("receipt", function (ev) {
      var r = JSON.parse(ev.data);
      logReceipt(r);
      if (r.warning_id === state.selected) reloadDetail();
      if (token()) reloadHealth();
    });
  }

  // ---------------------------------------------------------------------------------------------- start
  function start() {
    $("show-ended").addEventListener("change", function () {
      if ($("show-ended").checked) loadEnded();
      renderList(activeWarnings());
    });
    $("show-drills").addEventListener("change", function () { render(); });
    $("detail-close").addEventListener("click", function () {
      state.selected = null;
      $("detail-panel").hidden = true;
      Object.keys(state.countyEls).forEach(function (c) { state.countyEls[c].classList.remove("selected"); });
      renderList(activeWarnings());
    });
    $("token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var value = $("token").value.trim();
      $("token").value = "";
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      loadHealth();
    });
    $("token-forget").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      $("subs-body").textContent = "";
      $("redrive-result").textContent = "";
      loadHealth();
    });
    $("redrive").addEventListener("click", redrive);

    fetch("/api/v1/regions").then(function (r) { return r.json(); }).then(buildMap)
      .catch(function (err) { $("map").textContent = "Cannot load regions: " + err.message; });
    fetch("/api/v1/stations").then(function (r) { return r.json(); })
      .then(function (list) { state.stations = list; drawStations(); })
      .catch(function () { /* markers are optional */ });
    fetch("/api/v1/info").then(function (r) { return r.json(); }).then(function (info) {
      if (info.demo) { $("demo-banner").textContent = info.demo; $("demo-banner").hidden = false; }
      if (info.memory_only) {  // the embedded tansu broker: nothing survives a stop
        $("memory-banner").textContent = "仅内存 · " + info.broker;
        $("memory-banner").hidden = false;
      }
    }).catch(function () { /* the banner is informational */ });
    connect();
    loadHealth();
    setInterval(render, 30000);          // expiries pass without any event
    setInterval(function () { if (token()) loadHealth(); }, 30000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

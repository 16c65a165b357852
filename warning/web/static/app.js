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
  var UNITS = { tmax_day: "°C", tmin_day: "°C", ground_tmin_day: "°C", tmin_drop_24h: "°C", tmin_drop_48h: "°C",
                wind_max_day: "m/s", gust_max_day: "m/s", wind_now: "m/s", visibility: "m", rh_now: "%",
                api_mm: "mm" };
  var NO_WARNING_FILL = "#f7f8fa";
  var TOKEN_KEY = "ews.operatorToken";
  var SVG_NS = "http://www.w3.org/2000/svg";

  var I18N = window.EWS_I18N || { t: function (k) { return k; }, hazard: function (h) { return h; },
                                  level: function (l) { return l; }, word: function (w) { return w; }, lang: "en",
                                  onChange: function () {} };
  var t = I18N.t;
  // one-character hazard markers on the map (a county shows one per active hazard)
  var HAZARD_MARK = {
    zh: { rainstorm: "雨", flash_flood: "洪", heat: "热", frost: "霜", cold_wave: "寒", gale: "风", sandstorm: "沙",
          drought: "旱", heat_health: "暑" },
    en: { rainstorm: "R", flash_flood: "F", heat: "H", frost: "Fr", cold_wave: "C", gale: "G", sandstorm: "S",
          drought: "D", heat_health: "HH" },
  };
  function hazardMark(h) { return (HAZARD_MARK[I18N.lang] || HAZARD_MARK.en)[h] || h.charAt(0).toUpperCase(); }

  var state = {
    regions: {},          // code -> properties (code, name, name_zh, level, parent_code)
    countyEls: {},        // county code -> <path>
    prefEls: {},          // prefecture code -> outline <path>
    stations: [],         // from /api/v1/stations
    stationEls: {},       // station_id -> <circle>
    centres: {},          // region code -> [x, y] (label and marker anchor)
    gBadges: null,        // per-county hazard markers
    gLabels: null,        // prefecture and county names
    sseOpen: false,       // the live feed is connected
    ready: null,          // /readyz answered 200 (true), 503 (false), not yet asked (null)
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
  window.EWS = { colours: COLOURS, state: state };  // selectWarning, fmtTime, timeEl added below

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

  function fmtTime(iso) {  // Beijing time (UTC+8), what the bureau's operators read; UTC is on hover (timeEl)
    if (!iso) return "—";
    var ms = Date.parse(iso);
    if (isNaN(ms)) return String(iso);
    return new Date(ms + 8 * 3600 * 1000).toISOString().slice(0, 16).replace("T", " ") + " BJT";
  }

  function timeEl(iso, attrs) {  // <span> in Beijing time, the UTC instant as its title
    var a = Object.assign({ text: fmtTime(iso), title: iso || "", className: "t" }, attrs || {});
    return el("span", a);
  }

  function fmtValue(v, quantity) {  // "tmax_day 40.6 °C"
    if (v === null || v === undefined) return "—";
    var n = Number(v);
    var unit = UNITS[quantity] || (/^rain_/.test(quantity || "") ? "mm" : "");
    return (quantity ? quantity + " " : "") + (isNaN(n) ? String(v) : n.toFixed(1)) + (unit ? " " + unit : "");
  }

  function isRollup(e) { return e.region_level === "prefecture"; }

  // a warning's headline in the page's language, and the other one as its subtitle
  function headlineOf(e) {
    return (I18N.lang === "zh" ? e.headline_zh || e.headline_en : e.headline_en || e.headline_zh) || "";
  }
  function otherHeadline(e) { return (I18N.lang === "zh" ? e.headline_en : e.headline_zh) || ""; }

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

  // the area-weighted centroid of a geometry's largest ring, projected: where a region's name and markers go
  function centreOf(geometry, project) {
    var best = null, bestArea = 0;
    ringsOf(geometry).forEach(function (ring) {
      var pts = ring.map(project), a = 0, cx = 0, cy = 0;
      for (var i = 0, j = pts.length - 1; i < pts.length; j = i++) {
        var f = pts[j][0] * pts[i][1] - pts[i][0] * pts[j][1];
        a += f; cx += (pts[j][0] + pts[i][0]) * f; cy += (pts[j][1] + pts[i][1]) * f;
      }
      if (Math.abs(a) > bestArea && a !== 0) { bestArea = Math.abs(a); best = [cx / (3 * a), cy / (3 * a)]; }
    });
    return best;
  }

  function regionName(code) {
    var r = state.regions[code];
    if (!r) return code;
    return I18N.lang === "zh" ? (r.name_zh || r.name) : (r.name || r.name_zh);
  }

  // a prefecture's name as a map label: the autonomous prefectures' long names shortened (full name on hover)
  function shortName(code) {
    return regionName(code).replace(/ (Hui|Tibetan) Autonomous Prefecture$/, "")
      .replace(/(回族|藏族)自治州$/, "州");
  }

  function drawLabels() {  // prefecture names always, county names with the toggle or on hover
    var g = state.gLabels;
    if (!g) return;
    g.textContent = "";
    Object.keys(state.centres).forEach(function (code) {
      var r = state.regions[code];
      if (!r || (r.level !== "county" && r.level !== "prefecture")) return;
      var xy = state.centres[code], pref = r.level === "prefecture";
      var label = svg("text", { x: xy[0].toFixed(1), y: (xy[1] + (pref ? 0 : 16)).toFixed(1),
                                "class": "place-label " + (pref ? "pref-label" : "county-label"), "data-code": code });
      label.textContent = pref ? shortName(code) : regionName(code);
      g.appendChild(label);
    });
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
    var gBadges = svg("g", { "class": "badges" });
    var gLabels = svg("g", { "class": "labels" });
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
        path.addEventListener("mouseleave", function () { markHovered(null); });
        path.addEventListener("click", function () { clickCounty(p.code); });
        gCounties.appendChild(path);
        state.countyEls[p.code] = path;
        state.centres[p.code] = centreOf(f.geometry, project);
      } else if (p.level === "prefecture") {
        state.centres[p.code] = centreOf(f.geometry, project);
        var outline = svg("path", { d: pathData(f.geometry, project), "class": "prefecture",
                                    "data-code": p.code, "fill-rule": "evenodd" });
        gPrefs.appendChild(outline);
        state.prefEls[p.code] = outline;
      }
    });
    root.appendChild(gCounties);
    root.appendChild(gAreas);
    root.appendChild(gPrefs);
    root.appendChild(gLabels);
    root.appendChild(gStations);
    root.appendChild(gBadges);
    var box = $("map");
    box.textContent = "";
    box.appendChild(root);
    state.gStations = gStations;
    state.gAreas = gAreas;
    state.gBadges = gBadges;
    state.gLabels = gLabels;
    state.mapLoaded = true;
    enableZoom(root, w, h);
    drawLabels();
    drawStations();
    render();
  }

  // wheel to zoom about the pointer (1x to 8x), drag to pan, double-click to reset; from 2x the county names show
  function enableZoom(root, w, h) {
    var view = { x: 0, y: 0, w: w, h: h }, drag = null, box = $("map");
    function apply() {
      root.setAttribute("viewBox", [view.x, view.y, view.w, view.h].map(function (v) { return v.toFixed(1); }).join(" "));
      var zoom = w / view.w;
      box.classList.toggle("zoomed", zoom >= 2);
      box.setAttribute("data-zoom", zoom.toFixed(2));
    }
    function toSvg(ev) {
      var r = root.getBoundingClientRect(), s = Math.max(view.w / r.width, view.h / r.height);
      var ox = (r.width - view.w / s) / 2, oy = (r.height - view.h / s) / 2;  // xMidYMid meet letterboxing
      return [view.x + (ev.clientX - r.left - ox) * s, view.y + (ev.clientY - r.top - oy) * s, s];
    }
    root.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var p = toSvg(ev), f = ev.deltaY < 0 ? 1 / 1.25 : 1.25;
      var nw = Math.min(w, Math.max(w / 8, view.w * f)), k = nw / view.w;
      view = { x: p[0] - (p[0] - view.x) * k, y: p[1] - (p[1] - view.y) * k, w: nw, h: view.h * k };
      apply();
    }, { passive: false });
    root.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, y: ev.clientY, v: view }; });
    window.addEventListener("mouseup", function () { drag = null; });
    window.addEventListener("mousemove", function (ev) {
      if (!drag) return;
      var s = toSvg(ev)[2];
      view = { x: drag.v.x - (ev.clientX - drag.x) * s, y: drag.v.y - (ev.clientY - drag.y) * s, w: drag.v.w,
               h: drag.v.h };
      apply();
    });
    root.addEventListener("dblclick", function () { view = { x: 0, y: 0, w: w, h: h }; apply(); });
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
    drawBadges(active);
    renderCountyList(active);
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

  // Every active hazard of a county, not only the highest (issue 20): the county's own warnings, highest first
  function countyHazards(active) {
    var by = {};
    active.forEach(function (e) {
      if (isRollup(e) || !state.countyEls[e.region_code]) return;
      (by[e.region_code] = by[e.region_code] || []).push(e);
    });
    Object.keys(by).forEach(function (code) {
      by[code].sort(function (a, b) {
        if (isDrill(a) !== isDrill(b)) return isDrill(a) ? 1 : -1;
        return RANK[b.level] - RANK[a.level] || (a.hazard < b.hazard ? -1 : 1);
      });
    });
    return by;
  }

  // one marker per hazard at the county's centre: a square in the level's colour with the hazard's mark
  function drawBadges(active) {
    var g = state.gBadges;
    if (!g) return;
    g.textContent = "";
    var by = countyHazards(active), size = 26, gap = 3;
    Object.keys(by).forEach(function (code) {
      var xy = state.centres[code];
      if (!xy) return;
      var list = by[code], w = list.length * size + (list.length - 1) * gap;
      list.forEach(function (e, i) {
        var x = xy[0] - w / 2 + i * (size + gap), y = xy[1] - size - 2;  // above the centre: the name goes below
        var b = svg("g", { "class": "badge", "data-region": code, "data-hazard": e.hazard, "data-level": e.level,
                           "data-status": statusOf(e), "data-warning-id": e.warning_id });
        b.appendChild(svg("rect", { x: x.toFixed(1), y: y.toFixed(1), width: size, height: size, rx: 3,
                                    fill: isDrill(e) ? "url(#hatch-" + e.level + ")" : COLOURS[e.level] }));
        var mark = svg("text", { x: (x + size / 2).toFixed(1), y: (y + size / 2 + 1).toFixed(1),
                                 fill: e.level === "yellow" || e.level === "orange" || isDrill(e) ? "#111" : "#fff" });
        mark.textContent = hazardMark(e.hazard);
        b.appendChild(mark);
        var title = svg("title", {});
        title.textContent = regionName(code) + " · " + I18N.hazard(e.hazard) + " " + I18N.level(e.level) +
          (isDrill(e) ? " (" + (STATUS_LABEL[statusOf(e)] || statusOf(e)) + ")" : "");
        b.appendChild(title);
        b.addEventListener("click", function () { selectWarning(e.warning_id); });
        b.addEventListener("mouseenter", function () { hoverCounty(code); });
        g.appendChild(b);
      });
    });
  }

  // the side list: every county with an active warning and all its hazards
  function renderCountyList(active) {
    var ul = $("county-list");
    if (!ul) return;
    ul.textContent = "";
    var by = countyHazards(active);
    var codes = Object.keys(by).sort(function (a, b) {
      return RANK[by[b][0].level] - RANK[by[a][0].level] || (a < b ? -1 : 1);
    });
    codes.forEach(function (code) {
      var r = state.regions[code], parent = r && state.regions[r.parent_code];
      var li = el("li", { "data-region": code, "data-count": String(by[code].length) },
        el("span", { className: "name", text: regionName(code),
                     title: (parent ? regionName(parent.code) + " · " : "") + code }));
      by[code].forEach(function (e) {
        var hz = el("span", { className: "hz", "data-hazard": e.hazard, "data-level": e.level,
                              "data-warning-id": e.warning_id },
          el("span", { className: "badge-chip" + (isDrill(e) ? " hatched" : ""), "data-level": e.level,
                       text: hazardMark(e.hazard) }),
          I18N.hazard(e.hazard) + " " + I18N.level(e.level));
        hz.addEventListener("click", function () { selectWarning(e.warning_id); });
        li.appendChild(hz);
      });
      ul.appendChild(li);
    });
    $("county-list-empty").hidden = codes.length > 0;
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
        el("span", { className: "title", text: headlineOf(e) },
          isDrill(e) ? el("span", { className: "tag status-tag", text: STATUS_LABEL[statusOf(e)] || statusOf(e) })
            : null,
          isRollup(e) ? el("span", { className: "tag", text: t("prefecture_tag") }) : null),
        el("span", { className: "meta", text: otherHeadline(e) }),
        el("span", { className: "meta" }, I18N.word(e.msg_type) + " · " + regionName(e.region_code) + " " + e.region_code +
          (top ? " · " + (top.station_name || top.station_id) + " " + fmtValue(top.value, top.quantity) : "") +
          (e.grid ? " · grid " + Math.round(100 * (e.grid.share || 0)) + " % of the county" : "") +
          " · " + t("sent") + " ", timeEl(e.sent),
          ended ? " · " + t("ended") : " · " + t("until_t") + " ", ended ? null : timeEl(e.expires)));
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

  function markHovered(code) {  // the hovered county's name shows even with county names off
    if (!state.gLabels) return;
    state.gLabels.querySelectorAll(".county-label.hovered").forEach(function (n) { n.classList.remove("hovered"); });
    if (code) {
      var label = state.gLabels.querySelector('.county-label[data-code="' + code + '"]');
      if (label) label.classList.add("hovered");
    }
  }

  function hoverCounty(code) {
    var r = state.regions[code];
    var here = warningsAt(code);
    var parent = r && state.regions[r.parent_code];
    markHovered(code);
    $("hover").textContent = (r ? r.name_zh + " " + r.name + " (" + code + ")" : code) +
      (parent ? " · " + regionName(parent.code) : "") + " · " +
      (here.length ? here.map(function (e) {
        return I18N.hazard(e.hazard) + " " + I18N.level(e.level) + (isRollup(e) ? " (" + t("prefecture_tag") + ")" : "") +
          (isDrill(e) ? " (" + (STATUS_LABEL[statusOf(e)] || statusOf(e)) + ")" : "");
      }).join(", ") : t("no_warning_here"));
  }

  function hoverStation(s) {
    var r = stationReadings(activeWarnings())[s.station_id];
    $("hover").textContent = s.name_zh + " " + s.name + " (" + s.station_id + "), " + s.elevation_m + " m · " +
      (r ? I18N.hazard(r.hazard) + " " + fmtValue(r.value, r.quantity) + " · " + fmtTime(r.time) + " (" +
        I18N.level(r.level) + ")" : t("no_reading_active"));
  }

  function clickCounty(code) {
    var here = warningsAt(code);
    if (here.length) selectWarning(here[0].warning_id);
  }

  // ---------------------------------------------------------------------------------------- detail
  function selectWarning(id) {
    state.selected = id;
    $("detail-panel").hidden = false;
    var known = null;
    state.warnings.forEach(function (e) { if (e.warning_id === id) known = e; });
    $("detail-title").textContent = known ? headlineOf(known) : "…";  // the headline, never the id (issue 20)
    $("detail-title").setAttribute("title", id);
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
      .catch(function (err) { $("detail-headline").textContent = "Cannot load the warning: " + err.message; });
  }
  var reloadDetail = debounce(loadDetail, 300);

  function renderDetail(d) {
    var events = d.events || [];
    var last = events[events.length - 1];
    if (last) {
      $("detail-title").textContent = headlineOf(last);
      $("detail-title").setAttribute("data-warning-id", d.warning_id);
    }
    $("detail-headline").textContent = last ? otherHeadline(last) + " · " + regionName(last.region_code) + " " +
      last.region_code + " · " + I18N.hazard(last.hazard) + " " + I18N.level(last.level) : "";
    if (last && state.countyEls[last.region_code]) state.countyEls[last.region_code].classList.add("selected");
    var audit = $("detail-audit");
    audit.textContent = "";
    (d.audit || []).forEach(function (a) {
      var changed = Object.keys(a.changes || {});
      audit.appendChild(el("li", { "data-action": a.action },
        el("span", { className: "type", text: a.action }), " by ", el("strong", { text: a.by || "?" }),
        " · ", timeEl(a.at), " · " + I18N.word(a.msg_type || "") + " " + (a.level || "") +
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
        el("span", { className: "type", text: I18N.word(e.msg_type) }), " ",
        el("span", { text: I18N.hazard(e.hazard) + " " + I18N.level(e.level) + " · " + e.cma_code + " · " + e.severity }),
        el("div", { className: "meta" }, t("sent") + " ", timeEl(e.sent), " · " + t("onset") + " ", timeEl(e.onset),
          " · " + t("expires") + " ", timeEl(e.expires), " · seq " + e.seq),
        stations ? el("div", { className: "meta", text: t("stations_in") + ": " + stations }) : null,
        (I18N.lang === "zh" ? e.instruction_zh : e.instruction_en || e.instruction_zh)
          ? el("div", { className: "meta", text: I18N.lang === "zh" ? e.instruction_zh : e.instruction_en || e.instruction_zh })
          : null));
    });
    var known = $("detail-received");
    known.textContent = "";
    (d.received || []).forEach(function (w) {
      known.appendChild(el("tr", { "data-subscription": w.subscription_id },
        el("td", { text: w.name || w.department || "?" }),
        el("td", { text: w.department || "" }),
        el("td", { text: w.delivered_at ? fmtTime(w.delivered_at) : "—", title: w.delivered_at || "" }),
        el("td", { className: w.acknowledged_at ? "acked" : "not-acked",
                   text: w.acknowledged_at ? fmtTime(w.acknowledged_at) : t("not_acked"),
                   title: w.acknowledged_at || "" })));
    });
    $("detail-no-received").hidden = (d.received || []).length > 0;
    var tbody = $("detail-deliveries");
    tbody.textContent = "";
    var deliveries = (d.deliveries || []).slice().sort(function (a, b) { return a.time < b.time ? 1 : -1; });
    deliveries.forEach(function (r) {
      tbody.appendChild(el("tr", null,
        el("td", { text: fmtTime(r.time), title: r.time }),
        el("td", { text: (r.subscription_name || "?") + (r.department ? " · " + r.department : ""),
                   "data-subscription": r.subscription_id }),
        // why it went beyond routing: backfill, reminder (not acknowledged), escalation (to a fallback subscription)
        el("td", { text: String(r.type || "").replace(/^warning\./, "") + (r.why ? " · " + t("why_" + r.why) : ""),
                   "data-why": r.why || "" }), el("td", { text: String(r.attempt) }),
        // result, HTTP status and the outcome class in one cell: the table fits the side column (issue 20)
        el("td", { className: "result-" + r.result, text: r.result +
          (r.status !== null && r.status !== undefined ? " · " + r.status : "") +
          (r.error && r.error !== "HTTP " + r.status ? " · " + r.error : "") }),
        el("td", { text: r.latency_s === null || r.latency_s === undefined ? "—" : (r.latency_s * 1000).toFixed(0) + " ms" })));
    });
    $("detail-no-deliveries").hidden = deliveries.length > 0;
  }

  // ----------------------------------------------------------------------------------- subscribers
  function authHeaders() { return { Authorization: "Bearer " + token(), Accept: "application/json" }; }

  function loadHealth() {
    if (!token()) {
      $("subs-table").hidden = true;
      $("redrive").disabled = true;
      $("subs-status").textContent = t("token_needed");
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
        el("td", null, h.last_error ? h.last_error + " (" : "", h.last_error ? timeEl(h.last_error_time) : null,
          h.last_error ? ")" : ""),
        el("td", { text: String(h.dead_letters) })));
    });
    $("subs-table").hidden = subs.length === 0;
    $("redrive").disabled = false;
    $("subs-status").textContent = subs.length ? subs.length + " " + t("subs_summary") + " " +
      d.receipts_window + " · " + fmtTime(d.time) : t("no_subs");
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
      var w = null;
      state.warnings.forEach(function (e) { if (e.warning_id === r.warning_id) w = e; });
      ul.appendChild(el("li", null, timeEl(r.time), " " + (r.subscription_name || r.department) + " (" +
        r.department + ") ",
        el("span", { className: "result-" + r.result, text: r.result }),
        " " + String(r.type || "").replace(/^warning\./, "") + " #" + r.attempt + (r.status ? " HTTP " + r.status : "") +
        (r.error && r.error !== "HTTP " + r.status ? " " + r.error : "") + (w ? " · " + headlineOf(w) : "")));
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
  // the badge says "live" only while the feed is connected AND /readyz answers 200: a worker that has not
  // joined its group or recovered its tables serves a stale view, so 503 shows red "not ready"
  function renderConn() {
    var conn = $("conn");
    var s = state.ready === false ? "notready" : state.sseOpen ? (state.ready ? "live" : "connecting")
      : state.ready === null ? "connecting" : "error";
    conn.dataset.state = s;
    conn.textContent = t({ notready: "conn_not_ready", live: "conn_live", connecting: "conn_connecting",
                           error: "conn_reconnecting" }[s]);
  }

  function pollReady() {
    fetch("/readyz", { cache: "no-store" })
      .then(function (r) { state.ready = r.status === 200; })
      .catch(function () { state.ready = false; })
      .then(renderConn);
  }

  function connect() {
    var es = new EventSource("/api/v1/events");
    es.onopen = function () { state.sseOpen = true; renderConn(); };
    es.onerror = function () { state.sseOpen = false; renderConn(); };
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
      document.dispatchEvent(new Event("ews:receipt"));  // console.js refreshes the public delivery health
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
    pollReady();
    setInterval(pollReady, 5000);
    loadHealth();
    $("show-county-names").addEventListener("change", function () {
      $("map").classList.toggle("county-names", $("show-county-names").checked);
    });
    I18N.onChange(function () {  // what app.js built in the old language
      drawLabels();
      render();
      renderReceipts();
      renderConn();
      if (state.selected) loadDetail();
    });
    setInterval(render, 30000);          // expiries pass without any event
    setInterval(function () { if (token()) loadHealth(); }, 30000);
  }

  Object.assign(window.EWS, { selectWarning: function (id) { selectWarning(id); }, fmtTime: fmtTime, timeEl: timeEl,
                              regionName: regionName, headlineOf: headlineOf, el: el, svg: svg });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

/* The bureau's desk on the dashboard (issue 20): the review queue (drafts of levels under review: approve, edit
 * and approve, reject) and silences (list, add, end). Both need the operator token (the same one the subscriber
 * panel keeps in this tab's sessionStorage); decisions are recorded under the operator the token names.
 * Plain DOM, no framework, no inline script (the page's CSP). */
(function () {
  "use strict";
  var TOKEN_KEY = "ews.operatorToken";
  var EDITABLE = ["headline_zh", "headline_en", "instruction_zh", "instruction_en", "expires"];
  var state = { drafts: [], silences: [], editing: null, names: {} };  // names: subscription id -> name
  var I18N = window.EWS_I18N || { t: function (k) { return k; }, word: function (w) { return w; },
    onChange: function () {} };
  var t = I18N.t;

  function $(id) { return document.getElementById(id); }
  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    Array.prototype.slice.call(arguments, 2).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function fmtTime(iso) {  // Beijing time, with UTC on hover (title)
    if (!iso) return "—";
    var t = new Date(Date.parse(iso) + 8 * 3600 * 1000);
    return t.toISOString().slice(0, 16).replace("T", " ") + " BJT";
  }
  function timeEl(iso) { return el("span", { className: "t", text: fmtTime(iso), title: iso || "" }); }
  function zh() { return I18N.lang === "zh"; }
  function lv(l) { return I18N.level ? I18N.level(l) : l; }
  function hz(h) { return I18N.hazard ? I18N.hazard(h) : h; }
  function minutes(s) { return s < 90 ? s + " s" : Math.round(s / 60) + " min"; }

  function api(method, path, body) {
    var headers = { Authorization: "Bearer " + token(), Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: headers, cache: "no-store",
                         body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (!r.ok) throw new Error("HTTP " + r.status + (data && data.error ? ": " + data.error : ""));
          return data;
        });
      });
  }

  // ------------------------------------------------------------------------------------------ review queue
  function loadDrafts() {
    if (!token()) {
      $("review-status").textContent = t("review_token");
      $("review-list").textContent = "";
      $("review-count").textContent = "–";
      return;
    }
    api("GET", "/api/v1/drafts").then(function (drafts) {
      state.drafts = drafts || [];
      renderDrafts();
    }).catch(function (err) { $("review-status").textContent = "Review queue: " + err.message; });
  }

  function renderDrafts() {
    var ul = $("review-list");
    var keep = state.editing;
    ul.textContent = "";
    var escalated = state.drafts.filter(function (d) { return d.escalated; }).length;
    $("review-count").textContent = String(state.drafts.length);
    $("review-count").setAttribute("data-escalated", escalated ? "1" : "0");
    $("review-status").textContent = state.drafts.length
      ? state.drafts.length + " " + t("waiting") + (escalated ? " · " + escalated + " " + t("escalated") : "")
      : t("review_none");
    state.drafts.forEach(function (d) {
      var e = d.event || {};
      var li = el("li", { "data-draft-id": d.id, "data-escalated": d.escalated ? "1" : "0",
                          className: d.escalated ? "escalated" : "" },
        el("span", { className: "chip", "data-level": d.level }),
        el("div", null,
          el("div", { className: "title", text: zh() ? e.headline_zh || e.headline_en || "" : e.headline_en || "" }),
          el("div", { className: "meta", text: zh() ? e.headline_en || "" : e.headline_zh || "" }),
          el("div", { className: "meta" }, I18N.word(d.msg_type) + " · " + lv(d.level) + " · " + hz(d.hazard) + " · " +
            (zh() ? d.region_name_zh || d.region_name : d.region_name || d.region_name_zh || d.region_code) + " · " +
            t("expires") + " ", timeEl(e.expires), " · " + t("waiting") + " " + minutes(d.age_s) +
            (d.escalated ? " · " + t("escalated") : "")),
          el("div", { className: "actions" },
            el("button", { type: "button", "data-action": "approve" }, t("approve")),
            el("button", { type: "button", "data-action": "edit" }, t("edit")),
            el("button", { type: "button", "data-action": "reject" }, t("reject"))),
          el("div", { className: "result muted" })));
      li.querySelector("[data-action=approve]").addEventListener("click", function () { decide(d, "approve", {}); });
      li.querySelector("[data-action=edit]").addEventListener("click", function () { editForm(li, d); });
      li.querySelector("[data-action=reject]").addEventListener("click", function () { rejectForm(li, d); });
      ul.appendChild(li);
      if (keep && keep.id === d.id) (keep.kind === "edit" ? editForm : rejectForm)(li, d, keep.values);
    });
  }

  function editForm(li, d, values) {
    state.editing = { id: d.id, kind: "edit" };
    var e = d.event || {};
    var form = el("form", { className: "edit-form" });
    EDITABLE.forEach(function (f) {
      var value = values && values[f] !== undefined ? values[f] : (e[f] || "");
      var input = f.indexOf("instruction") === 0 ? el("textarea", { name: f, rows: "2" }) : el("input", { name: f });
      input.value = value;
      form.appendChild(el("label", null, f + (f === "expires" ? " (UTC ISO)" : ""), input));
    });
    form.appendChild(el("button", { type: "submit" }, t("approve_edits")));
    form.appendChild(el("button", { type: "button", "data-action": "cancel-edit" }, t("cancel")));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var edits = {};
      EDITABLE.forEach(function (f) {
        var v = form.elements[f].value.trim();
        if (v && v !== (e[f] || "")) edits[f] = v;
      });
      decide(d, "approve", edits);
    });
    form.querySelector("[data-action=cancel-edit]").addEventListener("click", function () {
      state.editing = null; renderDrafts();
    });
    form.addEventListener("input", function () {
      var vals = {};
      EDITABLE.forEach(function (f) { vals[f] = form.elements[f].value; });
      state.editing = { id: d.id, kind: "edit", values: vals };
    });
    swapForm(li, form);
  }

  function rejectForm(li, d, values) {
    state.editing = { id: d.id, kind: "reject" };
    var form = el("form", { className: "edit-form" });
    var input = el("input", { name: "reason", placeholder: t("reject_why") });
    input.value = values && values.reason ? values.reason : "";
    form.appendChild(el("label", null, t("th_reason"), input));
    form.appendChild(el("button", { type: "submit" }, t("reject_send_nothing")));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      decide(d, "reject", { reason: input.value.trim() });
    });
    form.addEventListener("input", function () {
      state.editing = { id: d.id, kind: "reject", values: { reason: input.value } };
    });
    swapForm(li, form);
  }

  function swapForm(li, form) {
    var old = li.querySelector("form.edit-form");
    if (old) old.remove();
    li.querySelector(".actions").after(form);
  }

  function decide(d, action, body) {
    var out = document.querySelector('#review-list li[data-draft-id="' + d.id + '"] .result');
    if (out) out.textContent = action + "…";
    api("POST", "/api/v1/drafts/" + encodeURIComponent(d.id) + "/" + action, body).then(function (r) {
      state.editing = null;
      $("review-last").textContent = (r.state === "pending" ? I18N.word(action) + " …" : I18N.word(r.state)) + " · " +
        (d.region_name_zh || d.region_code) + " " + d.hazard + " " + d.level +
        (r.decision ? " · " + r.decision.by + " " + fmtTime(r.decision.at) : "");
      $("review-last").setAttribute("data-state", r.state);
      loadDrafts();
    }).catch(function (err) { if (out) out.textContent = err.message; });
  }

  // ---------------------------------------------------------------------------------------------- silences
  function loadSilences() {
    if (!token()) {
      $("silences-status").textContent = t("silences_token");
      $("silences-body").textContent = "";
      $("silences-table").hidden = true;
      return;
    }
    api("GET", "/api/v1/silences").then(function (list) {
      state.silences = list || [];
      var unnamed = state.silences.some(function (x) { return x.subscription_id && !state.names[x.subscription_id]; });
      return unnamed ? loadNames() : null;
    }).then(function () {
      renderSilences();
    }).catch(function (err) { $("silences-status").textContent = "Silences: " + err.message; });
  }

  // subscribers by name, not by id (the silences' scope, and the form takes a name too)
  function loadNames() {
    return api("GET", "/api/v1/subscriptions").then(function (subs) {
      (subs || []).forEach(function (x) { state.names[x.id] = x.name; });
    }).catch(function () { /* ids stay shown */ }).then(function () { state.namesLoaded = true; });
  }

  function renderSilences() {
    var tbody = $("silences-body");
    tbody.textContent = "";
    state.silences.forEach(function (s) {
      var scope = s.subscription_id ? (state.names[s.subscription_id] || s.subscription_id)
        : (s.hazards || []).join(", ") + " in " + (s.regions || []).join(", ");
      var end = el("button", { type: "button" }, t("end_now"));
      end.addEventListener("click", function () {
        api("DELETE", "/api/v1/silences/" + encodeURIComponent(s.id)).then(function (r) {
          $("silences-status").textContent = t("silence_ended") + r.held_sent;
          loadSilences();
        }).catch(function (err) { $("silences-status").textContent = err.message; });
      });
      tbody.appendChild(el("tr", { "data-silence-id": s.id, "data-state": s.state },
        el("td", { text: s.state }), el("td", { text: scope, title: s.subscription_id || "" }),
        el("td", { text: fmtTime(s.starts), title: s.starts }), el("td", { text: fmtTime(s.ends), title: s.ends }),
        el("td", { text: s.author }), el("td", { text: s.reason }), el("td", null, end)));
    });
    $("silences-table").hidden = state.silences.length === 0;
    if (!state.silences.length) $("silences-status").textContent = t("silences_none");
    else $("silences-status").textContent = state.silences.length + " " + t("silences_n");
  }

  function addSilence(ev) {
    ev.preventDefault();
    var f = $("silence-form");
    if (!state.namesLoaded) { loadNames().then(function () { addSilence(ev); }); return; }
    var body = { reason: f.elements.reason.value.trim(), ends: f.elements.ends.value.trim() };
    var sub = f.elements.subscription_id.value.trim();
    Object.keys(state.names).forEach(function (id) { if (state.names[id] === sub) sub = id; });  // a name typed
    if (sub) body.subscription_id = sub;
    else {
      body.regions = f.elements.regions.value.split(",").map(function (x) { return x.trim(); }).filter(Boolean);
      body.hazards = f.elements.hazards.value.split(",").map(function (x) { return x.trim(); }).filter(Boolean);
    }
    api("POST", "/api/v1/silences", body).then(function () {
      f.reset();
      $("silences-status").textContent = t("silence_added");
      loadSilences();
    }).catch(function (err) { $("silences-status").textContent = err.message; });
  }

  function refresh() { loadDrafts(); loadSilences(); }

  function start() {
    $("token-form").addEventListener("submit", function () { setTimeout(refresh, 0); });
    $("token-forget").addEventListener("click", function () { setTimeout(refresh, 0); });
    $("silence-form").addEventListener("submit", addSilence);
    refresh();
    I18N.onChange(function () {  // the queue and silences in the new language (an open edit form is kept)
      if (token()) { renderDrafts(); renderSilences(); } else refresh();
    });
    setInterval(function () { if (token()) refresh(); }, 5000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

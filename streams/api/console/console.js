// rcaflow console: incident list (polled), incident timeline, approve/reject for API approvers.
// Everything the API returns is untrusted text (mail bodies, labels, LLM output): it is only ever
// put into the page with textContent, never innerHTML.
"use strict";

const POLL_MS = 3000;
const TEXT = {
  en: {
    logout: "Sign out", login_title: "Sign in", login: "Sign in",
    login_help: "Paste your tenant token or your API approver token. It stays in this browser tab only.",
    incidents: "Incidents", state: "State", all: "all", open: "open", resolved: "resolved",
    opened: "Opened", alert: "Alert", class: "Class", cluster: "Cluster", count: "Count",
    waiting: "Awaiting approval", empty: "No incidents.", back: "← all incidents", actions: "Actions",
    evidence: "Evidence", tool: "Tool", query: "Query", status: "Status", result: "Result", timeline: "Timeline",
    approve: "Approve", reject: "Reject", reason: "Reason", tenant: "tenant", as_approver: "approver",
    reader: "read only", updated: "updated", diagnosis: "Diagnosis", no_actions: "No actions.",
    decided: "Recorded: {decision} by {approver}. The worker applies it; the executor runs what was approved.",
    refused: "Not recorded ({status} {reason}): {detail}", bad_token: "This token was refused.",
    unreachable: "The API cannot be reached.", awaits_until: "awaits approval until", risk: "risk",
    approver_line: "decided by", kind_alert: "alert", kind_diagnosis: "diagnosis", kind_action: "action",
    kind_approval: "approval", kind_audit: "audit", kind_resolved: "resolved", dry_run: "dry-run",
    labels: "Labels and annotations",
  },
  zh: {
    logout: "退出", login_title: "登录", login: "登录",
    login_help: "粘贴租户令牌或 API 审批人令牌。令牌只保存在当前浏览器标签页中。",
    incidents: "事件", state: "状态", all: "全部", open: "未解决", resolved: "已解决",
    opened: "发生时间", alert: "告警", class: "告警类别", cluster: "集群", count: "次数",
    waiting: "待审批", empty: "没有事件。", back: "← 全部事件", actions: "处置动作",
    evidence: "证据", tool: "工具", query: "查询", status: "状态", result: "结果", timeline: "时间线",
    approve: "批准", reject: "拒绝", reason: "理由", tenant: "租户", as_approver: "审批人",
    reader: "只读", updated: "更新于", diagnosis: "诊断", no_actions: "没有处置动作。",
    decided: "已记录：{approver} {decision}。worker 会应用该决定，executor 将执行已批准的动作。",
    refused: "未记录（{status} {reason}）：{detail}", bad_token: "令牌被拒绝。",
    unreachable: "无法连接 API。", awaits_until: "等待审批，截止", risk: "风险",
    approver_line: "决定人", kind_alert: "告警", kind_diagnosis: "诊断", kind_action: "动作",
    kind_approval: "审批", kind_audit: "审计", kind_resolved: "解决", dry_run: "演练 (dry-run)",
    labels: "标签和注解",
  },
};
const STATES_ZH = {
  open: "未解决", resolved: "已解决", proposed: "已提议", awaiting_approval: "待审批", approved: "已批准",
  rejected: "已拒绝", expired: "已过期", running: "执行中", succeeded: "成功", failed: "失败",
  rolled_back: "已回滚", withdrawn: "已撤回", "dry-run": "演练 (dry-run)",
};

let lang = localStorage.getItem("rcaflow.lang") || (navigator.language.startsWith("zh") ? "zh" : "en");
let me = null;
let timer = null;

const $ = (id) => document.getElementById(id);
const t = (key, vars) => (TEXT[lang][key] || key).replace(/\{(\w+)\}/g, (_, k) => (vars && k in vars ? vars[k] : ""));
const stateText = (s) => (lang === "zh" ? STATES_ZH[s] || s : s.replace(/_/g, " "));
const when = (iso) => (iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "");

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function token() { return sessionStorage.getItem("rcaflow.token"); }

async function api(path, options = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token()}` };
  if (options.body) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw { status: 0, reason: "unreachable", detail: t("unreachable") };
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    throw { status: response.status, reason: (body && body.reason) || "", detail: (body && body.detail) || "" };
  }
  return body;
}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  $("lang").textContent = lang === "zh" ? "English" : "中文";
}

function show(section) {
  for (const id of ["login", "list", "detail"]) $(id).hidden = id !== section;
  $("logout").hidden = section === "login";
  $("error").textContent = "";
}

function stamp() { $("updated").textContent = `${t("updated")} ${new Date().toLocaleTimeString()}`; }

async function whoami() {
  me = await api("/whoami");
  $("who").textContent = `${t("tenant")} ${me.tenant} · ${me.approver ? `${t("as_approver")} ${me.approver}` : t("reader")}`;
}

async function renderList() {
  const state = $("state-filter").value;
  const page = await api(`/incidents?limit=200${state ? `&state=${encodeURIComponent(state)}` : ""}`);
  const rows = $("incident-rows");
  rows.replaceChildren();
  for (const item of page.items) {
    const tr = el("tr", null, "row");
    tr.dataset.incident = item.incident_id;
    tr.dataset.testid = "incident-row";
    tr.append(el("td", when(item.opened_at)), el("td", `${item.alert} [${item.severity}]`),
      el("td", item.alert_class), el("td", item.cluster || "-"));
    const st = el("td");
    st.append(el("span", stateText(item.state), `state state-${item.state}`));
    tr.append(st, el("td", item.count), el("td", item.actions_awaiting_approval || ""));
    tr.addEventListener("click", () => { location.hash = `#/incident/${encodeURIComponent(item.incident_id)}`; });
    rows.append(tr);
  }
  $("empty").hidden = page.items.length > 0;
  stamp();
}

function actionCard(action) {
  const card = el("div", null, `action${action.state === "awaiting_approval" ? " awaiting" : ""}`);
  card.dataset.action = action.action_id;
  const head = el("div");
  head.append(el("strong", action.name), document.createTextNode(` ${action.tool}.${action.operation} · ${t("risk")} ${action.risk} `));
  // A dry run changed nothing: the API says "dry-run" for it, never "succeeded".
  const label = stateText(action.state);
  const state = el("span", label, `state state-${action.state}`);
  state.dataset.testid = "action-state";
  head.append(state);
  card.append(head, el("div", Object.entries(action.params).map(([k, v]) => `${k}=${v}`).join(" "), "muted"));
  if (action.result) card.append(el("div", action.result));
  if (action.approver) card.append(el("div", `${t("approver_line")}: ${action.approver}`, "muted"));
  if (action.state === "awaiting_approval") {
    if (action.expires_at) card.append(el("div", `${t("awaits_until")} ${when(action.expires_at)}`, "muted"));
    if (me && me.approver) {
      const form = el("div");
      const reason = el("input");
      reason.placeholder = t("reason");
      reason.maxLength = 500;
      reason.dataset.testid = "reason";
      const yes = el("button", t("approve"), "approve");
      yes.dataset.testid = "approve";
      const no = el("button", t("reject"), "reject");
      no.dataset.testid = "reject";
      yes.addEventListener("click", () => decide(action.action_id, "approve", reason.value));
      no.addEventListener("click", () => decide(action.action_id, "reject", reason.value));
      form.append(yes, no, reason);
      card.append(form);
    }
  }
  return card;
}

async function decide(actionId, verb, reason) {
  const message = $("decision-message");
  try {
    const result = await api(`/actions/${encodeURIComponent(actionId)}/${verb}`, {
      method: "POST", body: JSON.stringify({ reason }),
    });
    message.className = "ok";
    message.textContent = t("decided", { decision: t(result.decision), approver: result.approver });
  } catch (err) {
    message.className = "error";
    message.textContent = t("refused", { status: err.status, reason: err.reason, detail: err.detail });
  }
  await renderDetail(actionIdIncident);
}

let actionIdIncident = null;

async function renderDetail(incidentId) {
  actionIdIncident = incidentId;
  const d = await api(`/incidents/${encodeURIComponent(incidentId)}`);
  $("detail-title").textContent = `${d.alert} [${d.severity}] · ${stateText(d.state)}`;
  $("detail-meta").textContent = `${d.incident_id} · ${d.alert_class} · ${d.cluster || "-"} / ${d.namespace || "-"} · x${d.count} · ${when(d.opened_at)}`;
  $("detail-diagnosis").textContent = d.diagnosis ? `${t("diagnosis")}: ${d.diagnosis}` : "";
  // The latest alert's labels and annotations (mail text: shown as text only).
  const labels = $("detail-labels");
  labels.replaceChildren();
  const latest = d.alerts.length ? d.alerts[d.alerts.length - 1] : { labels: {}, annotations: {} };
  for (const [key, value] of [...Object.entries(latest.labels), ...Object.entries(latest.annotations)]) {
    labels.append(el("dt", key), el("dd", value));
  }
  const actions = $("actions");
  actions.replaceChildren(...d.actions.map(actionCard));
  if (!d.actions.length) actions.append(el("p", t("no_actions"), "muted"));
  const evidence = $("evidence");
  evidence.replaceChildren();
  for (const diag of d.diagnoses) {
    for (const ev of diag.evidence) {
      const tr = el("tr");
      const q = el("td");
      q.append(el("code", ev.query));
      tr.append(el("td", `${ev.tool}.${ev.operation}`), q, el("td", ev.status), el("td", ev.error || ev.summary));
      evidence.append(tr);
    }
  }
  const timeline = $("timeline");
  timeline.replaceChildren();
  for (const entry of d.timeline) {
    const li = el("li");
    li.dataset.kind = entry.kind;
    li.append(el("span", when(entry.at), "muted"), document.createTextNode(" "),
      el("span", t(`kind_${entry.kind}`), "kind"), document.createTextNode(` ${entry.summary}`));
    timeline.append(li);
  }
  stamp();
}

async function route() {
  clearInterval(timer);
  if (!token()) { show("login"); return; }
  try {
    if (!me) await whoami();
    const match = location.hash.match(/^#\/incident\/(.+)$/);
    if (match) {
      show("detail");
      const id = decodeURIComponent(match[1]);
      await renderDetail(id);
      timer = setInterval(() => renderDetail(id).catch(fail), POLL_MS);
    } else {
      show("list");
      await renderList();
      timer = setInterval(() => renderList().catch(fail), POLL_MS);
    }
  } catch (err) { fail(err); }
}

function fail(err) {
  if (err && err.status === 401) {
    sessionStorage.removeItem("rcaflow.token");
    me = null;
    show("login");
    $("login-error").textContent = t("bad_token");
    return;
  }
  $("error").textContent = err && err.detail ? `${err.status} ${err.reason} ${err.detail}` : String(err);
}

document.addEventListener("DOMContentLoaded", () => {
  applyLanguage();
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("rcaflow.token", $("token").value.trim());
    $("token").value = "";
    $("login-error").textContent = "";
    route();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem("rcaflow.token");
    me = null;
    $("who").textContent = "";
    route();
  });
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("rcaflow.lang", lang);
    applyLanguage();
    if (me) $("who").textContent = "";
    me = null;
    route();
  });
  $("state-filter").addEventListener("change", () => renderList().catch(fail));
  window.addEventListener("hashchange", route);
  route();
});

// verticalize console: the browser side. Plain ES2020, no library, no network outside this server's /api/.
'use strict';

// ------------------------------------------------------------------------------------------ strings
const I18N = {
  en: {
    title: 'verticalize console', skip: 'Skip to content', nav_label: 'Sections',
    nav_projects: 'Projects', nav_runs: 'Runs', nav_ladder: 'Ladder', nav_playground: 'Playground',
    nav_review: 'Review', run_select: 'Run', language: 'Language',
    key_needed: 'This console needs an API key (ask whoever runs it).', key_refused: 'The API key was refused; enter another.',
    api_key: 'API key', save_key: 'Save key', key_required: 'Enter a key first.',
    new_project: 'New project', project_name: 'Name', project_files: 'Documents to upload',
    project_folder: '…or a folder on the server',
    project_folder_hint: 'When filled, the server copies that folder instead of the uploads.',
    create_project: 'Create project', manifest: 'Documents',
    manifest_counts: '{ok} usable, {skipped} skipped, {chunks} chunks',
    col_path: 'File', col_status: 'Status', col_reason: 'Reason', col_chunks: 'Chunks',
    project: 'Project', gates: 'Gates',
    gates_hint: 'Each gate maps a business goal to a metric and a threshold; leave the rung empty to apply it to every rung.',
    col_goal: 'Goal', col_metric: 'Metric', col_op: 'Comparison', col_threshold: 'Threshold', col_rung: 'Rung',
    col_actions: 'Actions', add_gate: 'Add gate', remove_gate: 'Remove', save_gates: 'Save gates',
    gates_saved: 'Gates saved.', no_gates: 'No gates yet: add one to tell the ladder what "good enough" means.',
    any_rung: 'any rung', start_run_h: 'Start a run', run_overrides: 'Overrides (one key=value per line, optional)',
    start_run: 'Start run', bad_override: 'This line is not key=value: {line}',
    name_required: 'Give the project a name.', files_required: 'Choose documents to upload or name a folder on the server.',
    refresh: 'Refresh', run: 'Run', cancel_run: 'Cancel run', open_ladder: 'Open the ladder', stages: 'Stages',
    log: 'Log', report: 'Report', no_stages: 'No stage has started yet.',
    no_projects: 'No projects yet. Create the first one with the form below.',
    no_runs: 'No runs yet. Open a project and start a run.', no_runs_short: '(no runs)',
    no_run_selected: 'Choose a run in the header first.',
    no_ladder: 'This run has no ladder yet: it appears when the evaluation stage has finished.',
    col_name: 'Name', col_created: 'Created', col_documents: 'Documents', col_runs: 'Runs',
    col_last_run: 'Last run', col_id: 'Run', col_project: 'Project', col_started: 'Started', col_ended: 'Ended',
    col_iteration_of: 'Iteration of', col_ladder: 'Ladder', yes: 'yes', no: 'no', none: '—',
    metrics_h: 'Metrics per rung', gates_h: 'Gates', questions_h: 'Questions',
    questions_hint: 'Select a question to see each rung\'s answer and the sources it retrieved.',
    chart_caption: '{metric} per rung', rung: 'Rung', recommended: 'recommended',
    recommend_title: 'Recommendation: {rung}', recommend_pass: 'It passes every gate.',
    recommend_fail: 'No rung passes every gate yet.', no_recommendation: 'No recommendation: no rung was evaluated.',
    skipped_rungs: 'Not measured: {list}', col_gate: 'Gate', col_condition: 'Condition', col_value: 'Value',
    col_gap: 'Gap', col_result: 'Result', pass: 'pass', fail: 'fail', not_measured: 'not measured',
    col_question: 'Question', col_reference: 'Reference', col_answerable: 'Answerable',
    no_questions: 'No per-question results for this run.', prediction: 'Answer', refused: 'refused',
    latency: 'Latency', latency_ms: '{ms} ms', sources: 'Sources', no_sources: 'No sources.', chunk: 'chunk',
    score: 'score', question: 'Question', ask: 'Ask every rung', asking: 'Asking every rung…',
    question_required: 'Type a question first.', answered: '{n} answers.', model: 'model', rag_on: 'with RAG',
    rag_off: 'without RAG', rate_up: 'Good answer', rate_down: 'Bad answer', correction: 'Correction (the right answer)',
    send_correction: 'Send correction', correction_required: 'Write the correct answer first.',
    feedback_sent: 'Thank you: feedback #{id} is {status} review.', no_pending: 'Nothing is waiting for review.',
    col_served: 'Served answer', col_correction: 'Correction', col_rating: 'Rating', approve: 'Approve',
    reject: 'Reject', reviewed: 'Feedback #{id}: {status}.', next_iteration: 'Start the next iteration',
    iteration_started: 'Run {id} started.', network_error: 'The console server cannot be reached.',
    st_ok: 'ok', st_skipped: 'skipped', st_running: 'running', st_started: 'started', st_done: 'done',
    st_failed: 'failed', st_cancelled: 'cancelled', st_cached: 'cached', st_pending: 'pending',
    st_approved: 'approved', st_rejected: 'rejected', st_queued: 'queued',
  },
  zh: {
    title: 'verticalize 控制台', skip: '跳到正文', nav_label: '栏目',
    nav_projects: '项目', nav_runs: '运行', nav_ladder: '阶梯对比', nav_playground: '试答', nav_review: '审核',
    run_select: '运行', language: '语言',
    key_needed: '此控制台需要 API 密钥（请向管理员索取）。', key_refused: 'API 密钥被拒绝，请重新输入。',
    api_key: 'API 密钥', save_key: '保存密钥', key_required: '请先输入密钥。',
    new_project: '新建项目', project_name: '名称', project_files: '上传文档',
    project_folder: '……或服务器上的文件夹', project_folder_hint: '填写后，服务器复制该文件夹，而不使用上传的文件。',
    create_project: '创建项目', manifest: '文档',
    manifest_counts: '可用 {ok} 个，跳过 {skipped} 个，共 {chunks} 个分块',
    col_path: '文件', col_status: '状态', col_reason: '原因', col_chunks: '分块',
    project: '项目', gates: '业务门槛',
    gates_hint: '每个门槛把一个业务目标对应到一个指标和阈值；档位留空则对所有档位生效。',
    col_goal: '目标', col_metric: '指标', col_op: '比较', col_threshold: '阈值', col_rung: '档位',
    col_actions: '操作', add_gate: '添加门槛', remove_gate: '删除', save_gates: '保存门槛',
    gates_saved: '门槛已保存。', no_gates: '还没有门槛：添加一个，告诉阶梯对比什么才算“够好”。',
    any_rung: '所有档位', start_run_h: '开始运行', run_overrides: '覆盖配置（每行一个 key=value，可选）',
    start_run: '开始运行', bad_override: '这一行不是 key=value 格式：{line}',
    name_required: '请为项目命名。', files_required: '请选择要上传的文档，或填写服务器上的文件夹。',
    refresh: '刷新', run: '运行', cancel_run: '取消运行', open_ladder: '查看阶梯对比', stages: '阶段',
    log: '日志', report: '报告', no_stages: '尚无阶段开始。',
    no_projects: '还没有项目。请用下面的表单创建第一个。',
    no_runs: '还没有运行。打开一个项目并开始运行。', no_runs_short: '（无运行）',
    no_run_selected: '请先在页头选择一个运行。',
    no_ladder: '此运行还没有阶梯对比结果：评测阶段完成后才会出现。',
    col_name: '名称', col_created: '创建时间', col_documents: '文档数', col_runs: '运行数',
    col_last_run: '最近运行', col_id: '运行', col_project: '项目', col_started: '开始', col_ended: '结束',
    col_iteration_of: '迭代自', col_ladder: '阶梯对比', yes: '是', no: '否', none: '—',
    metrics_h: '各档位指标', gates_h: '业务门槛', questions_h: '逐题结果',
    questions_hint: '选择一道题，查看各档位的回答及其检索到的来源。',
    chart_caption: '各档位的 {metric}', rung: '档位', recommended: '推荐',
    recommend_title: '推荐：{rung}', recommend_pass: '它通过了所有门槛。',
    recommend_fail: '目前没有档位通过所有门槛。', no_recommendation: '无推荐：没有评测任何档位。',
    skipped_rungs: '未评测：{list}', col_gate: '门槛', col_condition: '条件', col_value: '实测值',
    col_gap: '差距', col_result: '结果', pass: '通过', fail: '未通过', not_measured: '未测量',
    col_question: '问题', col_reference: '参考答案', col_answerable: '可回答',
    no_questions: '此运行没有逐题结果。', prediction: '回答', refused: '拒答',
    latency: '时延', latency_ms: '{ms} 毫秒', sources: '来源', no_sources: '无来源。', chunk: '分块',
    score: '得分', question: '问题', ask: '向所有档位提问', asking: '正在向所有档位提问……',
    question_required: '请先输入问题。', answered: '共 {n} 个回答。', model: '模型', rag_on: '使用检索增强',
    rag_off: '不使用检索增强', rate_up: '回答得好', rate_down: '回答不好', correction: '更正（正确答案）',
    send_correction: '提交更正', correction_required: '请先写出正确答案。',
    feedback_sent: '谢谢：反馈 #{id} 状态为“{status}”，等待审核。', no_pending: '没有待审核的反馈。',
    col_served: '已给出的回答', col_correction: '更正', col_rating: '评价', approve: '批准', reject: '驳回',
    reviewed: '反馈 #{id}：{status}。', next_iteration: '开始下一轮迭代',
    iteration_started: '运行 {id} 已开始。', network_error: '无法连接控制台服务器。',
    st_ok: '可用', st_skipped: '已跳过', st_running: '运行中', st_started: '已开始', st_done: '完成',
    st_failed: '失败', st_cancelled: '已取消', st_cached: '已缓存', st_pending: '待审核',
    st_approved: '已批准', st_rejected: '已驳回', st_queued: '排队中',
  },
};
window.I18N = I18N;

const STORE_LANG = 'verticalize.console.lang';
const STORE_KEY = 'verticalize.console.key';
const VIEWS = ['projects', 'runs', 'ladder', 'playground', 'review'];
const DEFAULT_OPS = ['>=', '<=', '>', '<'];

const state = {
  lang: 'en', key: '', view: 'projects', metrics: null,
  projects: null, project: null, manifest: null, gates: [],
  runs: null, runId: '', runChosen: false, watch: null,
  ladder: null, questions: null, openQuestions: new Set(),
  answers: [], answersFor: '', review: null,
};

// ------------------------------------------------------------------------------------------ helpers
const $ = (sel) => document.querySelector(sel);
const enc = encodeURIComponent;

function storage(kind) {
  try { return kind === 'local' ? window.localStorage : window.sessionStorage; } catch (e) { return null; }
}
function stored(kind, name) {
  try { return (storage(kind) && storage(kind).getItem(name)) || ''; } catch (e) { return ''; }
}
function store(kind, name, value) {
  try { if (storage(kind)) storage(kind).setItem(name, value); } catch (e) { /* private mode: keep in memory */ }
}

function t(key, vars) {
  const dict = I18N[state.lang] || I18N.en;
  const s = dict[key] ?? I18N.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, n) => (vars && n in vars ? String(vars[n]) : m));
}
function statusLabel(status) {
  return (I18N[state.lang] || I18N.en)['st_' + status] ?? String(status ?? '');
}

/** A translated text that follows language switches: the key (and its values) stay on the element. */
function setText(node, key, vars) {
  if (!node) return;
  if (!key) {
    delete node.dataset.i18n; delete node.dataset.i18nArgs; node.textContent = ''; return;
  }
  node.dataset.i18n = key;
  if (vars) node.dataset.i18nArgs = JSON.stringify(vars); else delete node.dataset.i18nArgs;
  node.textContent = t(key, vars);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'value') node.value = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
function clear(node) { node.replaceChildren(); return node; }

function fmtNum(v) {
  if (v === null || v === undefined || v === '') return t('none');
  if (typeof v === 'boolean') return v ? t('yes') : t('no');
  if (typeof v !== 'number' || !Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return v.toFixed(a < 1 ? 3 : a < 100 ? 2 : 0);
}
function timeValue(v) {
  if (typeof v === 'number') return v < 1e12 ? v * 1000 : v;
  const n = Date.parse(v || '');
  return Number.isNaN(n) ? 0 : n;
}
function fmtTime(v) {
  if (v === null || v === undefined || v === '') return t('none');
  const ms = timeValue(v);
  if (!ms) return String(v);
  return new Date(ms).toLocaleString(state.lang === 'zh' ? 'zh-CN' : 'en-GB');
}
function badge(status) {
  return el('span', { class: 'badge', 'data-status': status, text: statusLabel(status) });
}
function table(node, headers, rows) {
  clear(node).append(el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows));
}

// ------------------------------------------------------------------------------------------ API
let keyPromise = null;
let keyResolve = null;

class ApiError extends Error {
  constructor(message, status, detail) {
    super(message);
    this.status = status;
    Object.assign(this, detail || {});
  }
}

function errorFrom(text, status) {
  let data = null;
  try { data = JSON.parse(text); } catch (e) { data = null; }
  const err = data && data.error;
  if (err && err.message) return new ApiError(err.message, status, { param: err.param, type: err.type, code: err.code });
  if (data && Array.isArray(data.detail)) {
    const msg = data.detail.map((d) => `${(d.loc || []).join('.')}: ${d.msg}`).join('; ');
    return new ApiError(msg, status, {});
  }
  if (data && typeof data.detail === 'string') return new ApiError(data.detail, status, {});
  return new ApiError(`HTTP ${status}`, status, {});
}

function askForKey() {
  if (!keyPromise) {
    keyPromise = new Promise((resolve) => { keyResolve = resolve; });
    const form = $('#key-form');
    setText(form.querySelector('p'), state.key ? 'key_refused' : 'key_needed');
    form.hidden = false;
    $('#api-key').focus();
  }
  return keyPromise;
}

function saveKey(ev) {
  ev.preventDefault();
  const value = $('#api-key').value.trim();
  if (!value) { showError(new Error(t('key_required'))); $('#api-key').focus(); return; }
  state.key = value;
  store('session', STORE_KEY, value);
  $('#key-form').hidden = true;
  $('#api-key').value = '';
  clearError();
  const resolve = keyResolve;
  keyPromise = null; keyResolve = null;
  if (resolve) resolve();
}

/** One call to the console API; answers the parsed JSON (or the text with raw), throws ApiError on 4xx/5xx. */
async function api(method, path, body, opts = {}) {
  for (;;) {
    const headers = { Accept: opts.raw ? 'text/html' : 'application/json' };
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload });
    } catch (e) {
      throw new ApiError(t('network_error'), 0, {});
    }
    if (res.status === 401) { await askForKey(); continue; }
    const text = await res.text();
    if (!res.ok) throw errorFrom(text, res.status);
    if (opts.raw) return text;
    try { return text ? JSON.parse(text) : {}; } catch (e) { throw new ApiError(`HTTP ${res.status}: not JSON`, res.status, {}); }
  }
}

function showError(err) { $('#error').textContent = (err && err.message) || String(err); }
function clearError() { $('#error').textContent = ''; }

/** An event handler that reports its failure in #error instead of throwing. */
function guard(fn) {
  return (ev) => {
    try {
      const p = fn(ev);
      if (p && typeof p.catch === 'function') p.catch(showError);
    } catch (e) { showError(e); }
  };
}

// ------------------------------------------------------------------------------------------ language, views
function pickLang() {
  const saved = stored('local', STORE_LANG);
  if (saved === 'zh' || saved === 'en') return saved;
  return /^zh/i.test(navigator.language || '') ? 'zh' : 'en';
}

function applyStatic() {
  document.documentElement.lang = state.lang;
  document.querySelectorAll('[data-i18n]').forEach((node) => {
    const args = node.dataset.i18nArgs ? JSON.parse(node.dataset.i18nArgs) : undefined;
    node.textContent = t(node.dataset.i18n, args);
  });
  document.querySelectorAll('[data-i18n-aria-label]').forEach((node) => {
    node.setAttribute('aria-label', t(node.dataset.i18nAriaLabel));
  });
  document.title = t('title');
}

function setLang(lang) {
  state.lang = lang === 'zh' ? 'zh' : 'en';
  store('local', STORE_LANG, state.lang);
  $('#lang').value = state.lang;
  applyStatic();
  renderAll();
}

function renderAll() {
  renderProjects();
  renderManifest();
  if (state.project) renderGates();
  renderRunSelect();
  renderRunsTable();
  if (state.watch) { renderStages(); setRunStatus(state.watch.status); }
  if (state.ladder) renderLadder();
  if (state.questions) renderQuestions();
  renderAnswers();
  if (state.review) renderReview();
}

async function showView(name) {
  state.view = VIEWS.includes(name) ? name : 'projects';
  for (const v of VIEWS) {
    $(`#view-${v}`).hidden = v !== state.view;
    const nav = $(`#nav-${v}`);
    if (v === state.view) nav.setAttribute('aria-current', 'page'); else nav.removeAttribute('aria-current');
  }
  try { history.replaceState(null, '', `#${state.view}`); } catch (e) { /* file: or sandboxed */ }
  await refreshView();
}

function refreshView() {
  switch (state.view) {
    case 'projects': return loadProjects();
    case 'runs': return loadRuns();
    case 'ladder': return loadLadder();
    case 'playground': return renderPlayground();
    case 'review': return loadReview();
    default: return undefined;
  }
}

// ------------------------------------------------------------------------------------------ 1. projects
async function loadMetrics() {
  state.metrics = await api('GET', '/api/metrics');
}
function metricNames() { return ((state.metrics && state.metrics.metrics) || []).map((m) => m.name); }
function metricInfo(name) { return ((state.metrics && state.metrics.metrics) || []).find((m) => m.name === name); }
function knownRungs() { return (state.metrics && state.metrics.rungs) || ['prompt', 'rag', 'peft', 'peft+rag']; }
function comparisons() { return (state.metrics && state.metrics.comparisons) || DEFAULT_OPS; }

async function loadProjects() {
  const data = await api('GET', '/api/projects');
  state.projects = data.projects || [];
  renderProjects();
}

function renderProjects() {
  const box = clear($('#projects-list'));
  if (!state.projects) return;
  if (!state.projects.length) { box.append(el('p', { class: 'empty', text: t('no_projects') })); return; }
  const rows = state.projects.map((p) => el('tr', { 'data-project': p.name },
    el('td', {}, el('button', { type: 'button', class: 'open-project', 'data-project': p.name, text: p.name,
      onclick: guard(() => openProject(p.name)) })),
    el('td', { text: fmtTime(p.created) }),
    el('td', { class: 'num', text: fmtNum(p.documents) }),
    el('td', { class: 'num', text: fmtNum(p.runs) }),
    el('td', {}, p.last_run ? [badge(p.last_run.status), ' ', p.last_run.id] : t('none')),
    el('td', { class: 'num', text: fmtNum((p.gates || []).length) })));
  const tbl = el('table', { id: 'projects-table' });
  table(tbl, [t('col_name'), t('col_created'), t('col_documents'), t('col_runs'), t('col_last_run'), t('gates')], rows);
  box.append(el('div', { class: 'table-wrap' }, tbl));
}

async function createProject(ev) {
  ev.preventDefault();
  clearError();
  const name = $('#project-name').value.trim();
  const folder = $('#project-folder').value.trim();
  const files = Array.from($('#project-files').files || []);
  if (!name) { showError(new Error(t('name_required'))); $('#project-name').focus(); return; }
  if (!folder && !files.length) { showError(new Error(t('files_required'))); $('#project-files').focus(); return; }
  let body;
  if (folder) body = { name, folder };
  else {
    body = new FormData();
    body.append('name', name);
    files.forEach((f) => body.append('files', f, f.name));
  }
  const button = $('#create-project');
  button.disabled = true;
  try {
    const data = await api('POST', '/api/projects', body);
    $('#new-project-form').reset();
    state.manifest = data.manifest || null;
    renderManifest();
    selectProject(data.project);
    await loadProjects();
  } finally {
    button.disabled = false;
  }
}

async function openProject(name) {
  clearError();
  const data = await api('GET', `/api/projects/${enc(name)}`);
  state.manifest = data.manifest || null;
  renderManifest();
  selectProject(data.project);
  $('#project-detail').scrollIntoView({ block: 'nearest' });
}

function selectProject(project) {
  state.project = project;
  state.gates = (project.gates || []).map((g) => ({ ...g }));
  $('#project-detail').hidden = false;
  $('#project-title').textContent = project.name;
  setText($('#gates-error'), null);
  setText($('#gates-status'), null);
  renderGates();
}

function renderManifest() {
  const box = $('#manifest');
  const m = state.manifest;
  box.hidden = !m;
  if (!m) return;
  const files = m.files || [];
  const c = m.counts || {
    ok: files.filter((f) => f.status === 'ok').length,
    skipped: files.filter((f) => f.status !== 'ok').length,
    chunks: files.reduce((s, f) => s + (f.chunks || 0), 0),
  };
  setText($('#manifest-counts'), 'manifest_counts', { ok: c.ok ?? 0, skipped: c.skipped ?? 0, chunks: c.chunks ?? 0 });
  const body = clear($('#manifest-table tbody'));
  for (const f of files) {
    body.append(el('tr', { 'data-status': f.status },
      el('td', { text: f.path }),
      el('td', { class: f.status === 'ok' ? 'ok' : 'skipped', 'data-status': f.status, text: statusLabel(f.status) }),
      el('td', { text: f.reason || '' }),
      el('td', { class: 'num', text: fmtNum(f.chunks) })));
  }
}

// ---- gates editor
function options(values, selected, labels) {
  return values.map((v, i) => el('option', { value: v, selected: v === selected, text: labels ? labels[i] : v }));
}

function gateCell(i, field, label, control) {
  control.id = `gate-${field}-${i}`;
  control.classList.add(`gate-${field}`);
  return el('td', {}, el('label', { class: 'sr-only', for: control.id, text: `${label} ${i + 1}` }), control);
}

function gateRow(g, i) {
  const set = (field, conv) => (ev) => { g[field] = conv ? conv(ev.target.value) : ev.target.value; };
  const metrics = metricNames();
  if (g.metric && !metrics.includes(g.metric)) metrics.push(g.metric);
  const rungs = knownRungs();
  const metricSel = el('select', { onchange: set('metric') }, options(metrics, g.metric));
  metricSel.querySelectorAll('option').forEach((o) => {
    const info = metricInfo(o.value);
    if (info && info.description) o.title = info.description;
  });
  return el('tr', { class: 'gate-row', 'data-index': i },
    gateCell(i, 'goal', t('col_goal'), el('input', { type: 'text', value: g.goal || '', oninput: set('goal') })),
    gateCell(i, 'metric', t('col_metric'), metricSel),
    gateCell(i, 'op', t('col_op'), el('select', { onchange: set('op') }, options(comparisons(), g.op))),
    gateCell(i, 'threshold', t('col_threshold'),
      el('input', { type: 'number', step: 'any', value: g.threshold ?? '', oninput: set('threshold') })),
    gateCell(i, 'rung', t('col_rung'), el('select', { onchange: set('rung', (v) => v || null) },
      options(['', ...rungs], g.rung || '', [t('any_rung'), ...rungs]))),
    el('td', {}, el('button', { type: 'button', class: 'remove-gate', text: t('remove_gate'),
      onclick: () => { state.gates.splice(i, 1); renderGates(); } })));
}

function renderGates() {
  const body = clear($('#gates-rows'));
  if (!state.gates.length) {
    body.append(el('tr', {}, el('td', { colspan: 6, class: 'empty', text: t('no_gates') })));
    return;
  }
  state.gates.forEach((g, i) => body.append(gateRow(g, i)));
}

function addGate() {
  const metrics = metricNames();
  state.gates.push({ goal: '', metric: metrics.includes('f1') ? 'f1' : metrics[0] || 'f1', op: '>=',
    threshold: '', rung: null });
  renderGates();
  $(`#gate-goal-${state.gates.length - 1}`).focus();
}

async function saveGates(ev) {
  ev.preventDefault();
  if (!state.project) return;
  const errBox = $('#gates-error');
  setText(errBox, null);
  setText($('#gates-status'), null);
  document.querySelectorAll('#gates-rows [aria-invalid]').forEach((n) => n.removeAttribute('aria-invalid'));
  const gates = state.gates.map((g) => {
    const n = parseFloat(g.threshold);
    return { goal: g.goal || '', metric: g.metric, op: g.op, threshold: Number.isFinite(n) ? n : null,
      rung: g.rung || null };
  });
  try {
    const data = await api('PUT', `/api/projects/${enc(state.project.name)}/gates`, { gates });
    state.gates = (data.gates || gates).map((g) => ({ ...g }));
    state.project.gates = data.gates || gates;
    renderGates();
    setText($('#gates-status'), 'gates_saved');
  } catch (e) {
    if (e.status !== 422 && e.status !== 400) throw e;
    errBox.textContent = e.message;
    markInvalid(e.param);
  }
}

function markInvalid(param) {
  const m = /gates\[(\d+)\]\.(\w+)/.exec(param || '');
  if (!m) return;
  const field = $(`#gate-${m[2]}-${m[1]}`);
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.setAttribute('aria-describedby', 'gates-error');
    field.focus();
  }
}

async function startRun(ev) {
  ev.preventDefault();
  clearError();
  if (!state.project) return;
  const lines = $('#run-overrides').value.split('\n').map((l) => l.trim()).filter(Boolean);
  const bad = lines.find((l) => !/^[^=\s][^=]*=/.test(l));
  if (bad) { showError(new Error(t('bad_override', { line: bad }))); $('#run-overrides').focus(); return; }
  const data = await api('POST', `/api/projects/${enc(state.project.name)}/runs`, { set: lines, iterate_from: null });
  await followRun(data.run);
}

async function followRun(run) {
  await showView('runs');
  await watchRun(run.id);
}

// ------------------------------------------------------------------------------------------ 2. runs
function sortRuns(runs) {
  return runs.slice().sort((a, b) => timeValue(b.started) - timeValue(a.started));
}
function findRun(id) { return (state.runs || []).find((r) => r.id === id); }

async function loadRuns() {
  const data = await api('GET', '/api/runs');
  state.runs = sortRuns(data.runs || []);
  renderRunSelect();
  renderRunsTable();
}

function renderRunSelect() {
  const sel = clear($('#run-select'));
  const runs = state.runs || [];
  if (!state.runChosen || !findRun(state.runId)) {
    const best = runs.find((r) => r.has_ladder) || runs[0];
    state.runId = best ? best.id : '';
  }
  if (!runs.length) { sel.append(el('option', { value: '', text: t('no_runs_short') })); return; }
  for (const r of runs) {
    sel.append(el('option', { value: r.id, selected: r.id === state.runId,
      text: `${r.id} · ${r.project} · ${statusLabel(r.status)}` }));
  }
  sel.value = state.runId;
}

function chooseRun(id) {
  if (id === state.runId) return undefined;
  state.runId = id;
  state.runChosen = true;
  state.ladder = null; state.questions = null; state.review = null;
  state.openQuestions = new Set();
  if (['ladder', 'playground', 'review'].includes(state.view)) return refreshView();
  return undefined;
}

function renderRunsTable() {
  const box = clear($('#runs-list'));
  if (!state.runs) return;
  if (!state.runs.length) { box.append(el('p', { class: 'empty', text: t('no_runs') })); return; }
  const rows = state.runs.map((r) => el('tr', { 'data-run': r.id, 'data-status': r.status },
    el('td', {}, el('button', { type: 'button', class: 'open-run', 'data-run': r.id, text: r.id,
      'aria-pressed': state.watch && state.watch.id === r.id ? 'true' : 'false', onclick: guard(() => watchRun(r.id)) })),
    el('td', { text: r.project }),
    el('td', {}, badge(r.status)),
    el('td', { text: fmtTime(r.started) }),
    el('td', { text: fmtTime(r.ended) }),
    el('td', { text: r.iteration_of || t('none') }),
    el('td', { text: r.has_ladder ? t('yes') : t('no') })));
  const tbl = el('table', { id: 'runs-table' });
  table(tbl, [t('col_id'), t('col_project'), t('col_status'), t('col_started'), t('col_ended'),
    t('col_iteration_of'), t('col_ladder')], rows);
  box.append(el('div', { class: 'table-wrap' }, tbl));
}

function stopWatching() {
  const w = state.watch;
  if (!w) return;
  if (w.es) { w.es.close(); w.es = null; }
  if (w.timer) { clearTimeout(w.timer); w.timer = null; }
  w.stopped = true;
}

async function watchRun(id) {
  clearError();
  stopWatching();
  const w = { id, run: null, stages: [], status: '', tail: new Set(), ended: false };
  state.watch = w;
  $('#run-detail').hidden = false;
  $('#run-title').textContent = id;
  $('#run-log').textContent = '';
  $('#report').hidden = true;
  $('#report-frame').srcdoc = '';
  renderRunsTable();
  const data = await api('GET', `/api/runs/${enc(id)}`);
  if (state.watch !== w) return;
  applyRun(w, data.run);
  setLog(data.log_tail || '');
  w.tail = new Set((data.log_tail || '').split('\n').filter(Boolean));
  if (data.run.status !== 'running') { await runEnded(w, data.run.status, data.run); return; }
  if (state.key) schedulePoll(w); else openEvents(w);
}

function applyRun(w, run) {
  w.run = run;
  w.stages = (run.stages || []).map((s) => ({ ...s }));
  renderStages();
  setRunStatus(run.status);
  $('#cancel-run').disabled = run.status !== 'running';
  $('#open-ladder').hidden = !run.has_ladder;
}

function setRunStatus(status) {
  if (state.watch) state.watch.status = status;
  const node = $('#run-status');
  node.textContent = status || '';
  node.dataset.status = status || '';
  const label = statusLabel(status);
  $('#run-status-label').textContent = status && label !== status ? `(${label})` : '';
}

function renderStages() {
  const list = clear($('#stage-list'));
  const w = state.watch;
  if (!w) return;
  if (!w.stages.length) { list.append(el('li', { class: 'empty', text: t('no_stages') })); return; }
  for (const s of w.stages) {
    const label = statusLabel(s.status);
    list.append(el('li', { 'data-stage': s.stage, 'data-status': s.status },
      el('span', { class: 'stage-name', text: s.stage }), ' ',
      el('span', { class: 'stage-status', 'data-status': s.status, text: s.status }),
      label !== s.status ? el('span', { class: 'muted', text: ` (${label})` }) : null,
      typeof s.seconds === 'number' ? el('span', { class: 'muted', text: ` · ${fmtNum(s.seconds)} s` }) : null));
  }
}

function upsertStage(w, d) {
  if (!d || !d.stage) return;
  const s = w.stages.find((x) => x.stage === d.stage);
  if (s) Object.assign(s, d); else w.stages.push({ ...d });
  if (state.watch === w) renderStages();
}

function setLog(text) {
  const pre = $('#run-log');
  pre.textContent = text;
  pre.scrollTop = pre.scrollHeight;
}

function appendLog(w, line) {
  if (state.watch !== w || typeof line !== 'string') return;
  const clean = line.replace(/\r?\n$/, '');
  if (w.tail.has(clean)) { w.tail.delete(clean); return; }  // already shown by log_tail
  const pre = $('#run-log');
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.append(document.createTextNode(`${clean}\n`));
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function eventData(ev) {
  try { return JSON.parse(ev.data); } catch (e) { return null; }
}

function openEvents(w) {
  const es = new EventSource(`/api/runs/${enc(w.id)}/events`);
  w.es = es;
  es.addEventListener('stage', (ev) => upsertStage(w, eventData(ev)));
  es.addEventListener('log', (ev) => { const d = eventData(ev); if (d) appendLog(w, d.line); });
  es.addEventListener('end', (ev) => {
    const d = eventData(ev) || {};
    es.close(); w.es = null;
    runEnded(w, d.status).catch(showError);
  });
  es.onerror = () => {  // the stream broke before its end event: carry on by polling
    es.close();
    if (w.es === es) w.es = null;
    if (!w.ended && !w.stopped) schedulePoll(w);
  };
}

function schedulePoll(w) {
  if (w.timer || w.stopped) return;
  w.timer = setTimeout(() => { w.timer = null; poll(w).catch(showError); }, 1000);
}

async function poll(w) {
  if (w.stopped || w.ended) return;
  const data = await api('GET', `/api/runs/${enc(w.id)}`);
  if (state.watch !== w || w.stopped) return;
  applyRun(w, data.run);
  setLog(data.log_tail || '');
  if (data.run.status === 'running') schedulePoll(w);
  else await runEnded(w, data.run.status, data.run);
}

async function runEnded(w, status, run) {
  if (w.ended) return;
  w.ended = true;
  let final = run;
  if (!final) {
    const data = await api('GET', `/api/runs/${enc(w.id)}`);
    final = data.run;
  }
  if (state.watch !== w) return;
  applyRun(w, final);
  setRunStatus(status || final.status);
  $('#cancel-run').disabled = true;
  loadRuns().catch(showError);
  if (final.has_ladder) await loadReport(w);
}

async function loadReport(w) {
  const html = await api('GET', `/api/runs/${enc(w.id)}/report`, undefined, { raw: true });
  if (state.watch !== w) return;
  $('#report-frame').srcdoc = html;
  $('#report').hidden = false;
}

async function cancelRun() {
  const w = state.watch;
  if (!w) return;
  clearError();
  const data = await api('POST', `/api/runs/${enc(w.id)}/cancel`);
  if (data.run && data.run.status !== 'running') {
    stopWatching();
    await runEnded(w, data.run.status, data.run);
  }
}

function openLadderFor() {
  const w = state.watch;
  if (!w) return undefined;
  state.runChosen = true;
  state.runId = w.id;
  state.ladder = null; state.questions = null;
  renderRunSelect();
  return showView('ladder');
}

// ------------------------------------------------------------------------------------------ 3. ladder
function showEmpty(id, key) {
  setText($(id), key || null);
}

async function loadLadder() {
  const id = state.runId;
  const run = findRun(id);
  $('#ladder-body').hidden = true;
  if (!id) { showEmpty('#ladder-empty', 'no_run_selected'); return; }
  if (run && !run.has_ladder) { showEmpty('#ladder-empty', 'no_ladder'); return; }
  showEmpty('#ladder-empty', null);
  const ladder = await api('GET', `/api/runs/${enc(id)}/ladder`);
  if (state.runId !== id) return;
  state.ladder = ladder;
  renderLadder();
  const questions = await api('GET', `/api/runs/${enc(id)}/questions`);
  if (state.runId !== id) return;
  state.questions = questions;
  renderQuestions();
}

function rungEntries(ladder) {
  let entries = Array.isArray(ladder.rungs)
    ? ladder.rungs.map((r) => [r.rung || r.name, r.metrics || r])
    : Object.entries(ladder.rungs || {});
  const order = ladder.cost_order || [];
  const rank = (n) => (order.includes(n) ? order.indexOf(n) : order.length);
  entries = entries.slice().sort((a, b) => rank(a[0]) - rank(b[0]));
  return entries;
}

function numericMetrics(entries) {
  const names = [];
  for (const [, m] of entries) {
    for (const [k, v] of Object.entries(m || {})) {
      if (typeof v === 'number' && Number.isFinite(v) && !names.includes(k)) names.push(k);
    }
  }
  return names;
}

function mainMetric(names) {
  if (names.includes('f1')) return 'f1';
  if (names.includes('accuracy')) return 'accuracy';
  return names[0] || null;
}

function recommendedRung(ladder) {
  const rec = ladder.recommendation;
  return rec && typeof rec === 'object' ? rec.rung : null;
}

function renderLadder() {
  const ladder = state.ladder;
  if (!ladder) return;
  $('#ladder-body').hidden = false;
  const entries = rungEntries(ladder);
  const names = numericMetrics(entries);
  const metric = mainMetric(names);
  const best = recommendedRung(ladder);
  renderRecommendation(ladder);
  setText($('#chart-caption'), 'chart_caption', { metric: metric || '' });
  clear($('#ladder-chart')).append(barChart(entries, metric, best));
  const rows = entries.map(([rung, m]) => el('tr', { 'data-rung': rung, class: rung === best ? 'recommended' : null },
    el('th', { scope: 'row' }, rung, rung === best ? el('span', { class: 'muted', text: ` (${t('recommended')})` }) : null),
    names.map((n) => el('td', { class: 'num', 'data-metric': n, text: fmtNum((m || {})[n]) }))));
  table($('#ladder-table'), [t('rung'), ...names.map((n) => {
    const info = metricInfo(n);
    return el('span', { title: info && info.description ? info.description : null }, n);
  })], rows);
  renderGaps(ladder);
}

function renderRecommendation(ladder) {
  const box = clear($('#recommendation'));
  const rec = ladder.recommendation;
  box.classList.remove('passes', 'fails');
  if (!rec || (typeof rec === 'object' && !rec.rung)) {
    box.append(el('p', { text: t('no_recommendation') }));
    if (rec && rec.reason) box.append(el('p', { class: 'muted', text: rec.reason }));
  } else if (typeof rec === 'string') {
    box.append(el('p', { text: rec }));
  } else {
    box.classList.add(rec.passes ? 'passes' : 'fails');
    box.append(el('p', {}, el('strong', { text: t('recommend_title', { rung: rec.rung }) })),
      el('p', { text: rec.passes ? t('recommend_pass') : t('recommend_fail') }),
      rec.reason ? el('p', { class: 'muted', text: rec.reason }) : null);
  }
  const skipped = Object.entries(ladder.skipped || {});
  if (skipped.length) {
    box.append(el('p', { class: 'muted', text: t('skipped_rungs', { list: skipped.map(([r, why]) => `${r} (${why})`).join('; ') }) }));
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function barChart(entries, metric, best) {
  const values = entries.map(([, m]) => (m && typeof m[metric] === 'number' ? m[metric] : 0));
  const W = Math.max(360, 120 * entries.length + 60);
  const H = 260; const top = 24; const bottom = 40; const left = 40;
  const maxV = Math.max(...values, 0);
  const scale = maxV <= 1 && Math.min(...values, 0) >= 0 ? 1 : maxV * 1.1 || 1;
  const plotH = H - top - bottom;
  const slot = (W - left - 20) / Math.max(entries.length, 1);
  const title = `${t('chart_caption', { metric: metric || '' })}: ` +
    entries.map(([r], i) => `${r} ${fmtNum(values[i])}`).join(', ');
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': title });
  root.append(svg('title', {}, title));
  root.append(svg('line', { class: 'axis', x1: left, y1: top + plotH, x2: W - 10, y2: top + plotH }));
  root.append(svg('text', { x: 4, y: top + 4 }, fmtNum(scale)));
  root.append(svg('text', { x: 4, y: top + plotH }, '0'));
  entries.forEach(([rung], i) => {
    const h = Math.max(0, (values[i] / scale) * plotH);
    const x = left + i * slot + slot * 0.15;
    const w = slot * 0.7;
    root.append(svg('rect', { class: rung === best ? 'bar recommended' : 'bar', x, y: top + plotH - h, width: w,
      height: h, 'data-rung': rung }));
    root.append(svg('text', { x: x + w / 2, y: top + plotH - h - 6, 'text-anchor': 'middle' }, fmtNum(values[i])));
    root.append(svg('text', { x: x + w / 2, y: top + plotH + 18, 'text-anchor': 'middle' }, rung));
  });
  return root;
}

function gapRows(ladder) {
  if (Array.isArray(ladder.gaps)) return ladder.gaps;
  const rows = [];
  for (const g of ladder.gates || []) {
    for (const [rung, r] of Object.entries(g.results || {})) {
      const lower = g.op === '<' || g.op === '<=';
      const gap = typeof r.value === 'number' ? (lower ? g.threshold - r.value : r.value - g.threshold) : null;
      rows.push({ gate: g.goal, metric: g.metric, op: g.op, threshold: g.threshold, rung, value: r.value, gap,
        passed: r.passed });
    }
  }
  return rows;
}

function gateLabel(row, ladder) {
  const g = row.gate;
  if (typeof g === 'string') return g;
  if (typeof g === 'number') return ((ladder.gates || [])[g] || {}).goal || `#${g + 1}`;
  if (g && typeof g === 'object') return g.goal || '';
  return row.goal || '';
}

function renderGaps(ladder) {
  const rows = gapRows(ladder).map((g) => {
    const measured = typeof g.value === 'number';
    const result = !measured ? t('not_measured') : g.passed ? t('pass') : t('fail');
    return el('tr', { 'data-rung': g.rung || '', 'data-passed': String(Boolean(g.passed)) },
      el('td', { text: gateLabel(g, ladder) }),
      el('td', { text: g.rung || t('any_rung') }),
      el('td', { text: g.metric }),
      el('td', { text: `${g.op} ${fmtNum(g.threshold)}` }),
      el('td', { class: 'num', text: fmtNum(g.value) }),
      el('td', { class: 'num', text: fmtNum(g.gap) }),
      el('td', { class: !measured ? '' : g.passed ? 'pass' : 'fail', text: result }));
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 7, class: 'empty', text: t('no_gates') })));
  table($('#gaps-table'), [t('col_gate'), t('col_rung'), t('col_metric'), t('col_condition'), t('col_value'),
    t('col_gap'), t('col_result')], rows);
}

function questionRungs(data) {
  if (Array.isArray(data.rungs) && data.rungs.length) return data.rungs;
  const first = (data.questions || [])[0];
  return first ? Object.keys(first.answers || {}) : [];
}

function renderQuestions() {
  const data = state.questions;
  const tbl = $('#questions-table');
  if (!data) { clear(tbl); return; }
  const rungs = questionRungs(data);
  const qs = data.questions || [];
  const headers = ['#', t('col_question'), t('col_reference'), t('col_answerable'), ...rungs.map((r) => `${r} F1`)];
  const rows = [];
  if (!qs.length) rows.push(el('tr', {}, el('td', { colspan: headers.length, class: 'empty', text: t('no_questions') })));
  qs.forEach((q, i) => {
    const qid = String(q.id ?? i);
    const open = state.openQuestions.has(qid);
    const detailId = `question-detail-${i}`;
    const row = el('tr', { class: 'question-row', 'data-qid': qid },
      el('td', { class: 'num', text: String(i + 1) }),
      el('td', {}, el('button', { type: 'button', class: 'question-toggle', 'aria-expanded': open ? 'true' : 'false',
        'aria-controls': detailId, text: q.question })),
      el('td', { text: (q.reference || []).join(' | ') }),
      el('td', { text: q.answerable === false ? t('no') : t('yes') }),
      rungs.map((r) => el('td', { class: 'num', text: fmtNum(((q.answers || {})[r] || {}).f1) })));
    row.addEventListener('click', () => toggleQuestion(qid));
    const detail = el('tr', { class: 'question-detail', id: detailId, hidden: !open },
      el('td', { colspan: headers.length }, rungAnswers(q, rungs)));
    rows.push(row, detail);
  });
  table(tbl, headers, rows);
}

function toggleQuestion(qid) {
  if (state.openQuestions.has(qid)) state.openQuestions.delete(qid); else state.openQuestions.add(qid);
  const row = document.querySelector(`#questions-table tr.question-row[data-qid="${CSS.escape(qid)}"]`);
  if (!row) return;
  const open = state.openQuestions.has(qid);
  row.querySelector('.question-toggle').setAttribute('aria-expanded', open ? 'true' : 'false');
  row.nextElementSibling.hidden = !open;
}

function sourceList(sources) {
  if (!sources || !sources.length) return el('p', { class: 'muted', text: t('no_sources') });
  return el('ol', { class: 'sources' }, sources.map((s) => el('li', {},
    el('strong', { text: s.source || '' }),
    s.chunk_id !== undefined && s.chunk_id !== null ? ` · ${t('chunk')} ${s.chunk_id}` : '',
    typeof s.score === 'number' ? ` · ${t('score')} ${fmtNum(s.score)}` : '',
    s.text ? el('span', { class: 'source-text', text: s.text.length > 400 ? `${s.text.slice(0, 400)}…` : s.text }) : null)));
}

function rungAnswers(q, rungs) {
  return el('div', { class: 'rung-answers' }, rungs.map((r) => {
    const a = (q.answers || {})[r] || {};
    const facts = [`F1 ${fmtNum(a.f1)}`, `EM ${fmtNum(a.exact_match)}`,
      `${t('latency')} ${t('latency_ms', { ms: fmtNum(a.latency_ms) })}`];
    if (a.refused) facts.push(t('refused'));
    return el('div', { class: 'rung-answer', 'data-rung': r },
      el('h5', { text: r }),
      el('p', {}, el('strong', { text: `${t('prediction')}: ` }), a.prediction ?? t('none')),
      el('p', { class: 'muted', text: facts.join(' · ') }),
      el('p', { class: 'muted', text: `${t('sources')}:` }),
      sourceList(a.sources));
  }));
}

// ------------------------------------------------------------------------------------------ 4. playground
function renderPlayground() {
  const id = state.runId;
  showEmpty('#playground-empty', id ? null : 'no_run_selected');
  $('#ask').disabled = !id;
  if (state.answersFor !== id) { state.answers = []; state.answersFor = id; }
  renderAnswers();
}

async function ask(ev) {
  ev.preventDefault();
  clearError();
  const id = state.runId;
  const question = $('#playground-question').value.trim();
  if (!id) { showError(new Error(t('no_run_selected'))); return; }
  if (!question) { showError(new Error(t('question_required'))); $('#playground-question').focus(); return; }
  const button = $('#ask');
  button.disabled = true;
  setText($('#ask-status'), 'asking');
  try {
    const data = await api('POST', `/api/runs/${enc(id)}/playground`, { question });
    state.answersFor = id;
    state.answers = (data.answers || []).map((a) => ({ ...a, draft: '', fb: null, fbError: false }));
    setText($('#ask-status'), 'answered', { n: state.answers.length });
    renderAnswers();
  } catch (e) {
    setText($('#ask-status'), null);
    throw e;
  } finally {
    button.disabled = !state.runId;
  }
}

function renderAnswers() {
  const box = clear($('#answers'));
  state.answers.forEach((a, i) => box.append(answerCard(a, i)));
}

function answerCard(a, i) {
  const cid = `correction-${i}`;
  const status = el('p', { class: a.fbError ? 'feedback-status error' : 'feedback-status', 'aria-live': 'polite',
    text: a.fb || '' });
  const correction = el('textarea', { id: cid, class: 'correction', rows: 2, value: a.draft,
    oninput: (ev) => { a.draft = ev.target.value; } });
  const send = (rating, needCorrection) => guard(() => sendFeedback(a, status, rating, needCorrection));
  const canRate = Boolean(a.response_id);
  const latency = typeof a.latency_ms === 'number' ? t('latency_ms', { ms: fmtNum(a.latency_ms) }) : t('none');
  return el('article', { class: 'answer', 'data-rung': a.rung, 'data-response-id': a.response_id || null },
    el('h3', { text: a.rung }),
    el('p', { class: 'muted', text: [a.model ? `${t('model')}: ${a.model}` : '', a.rag ? t('rag_on') : t('rag_off')]
      .filter(Boolean).join(' · ') }),
    el('p', { class: 'answer-text', text: a.text ?? (a.error && a.error.message) ?? '' }),
    el('p', { class: 'latency' }, `${t('latency')}: `, latency),
    el('h4', { text: t('sources') }),
    sourceList(a.sources),
    el('div', { class: 'buttons' },
      el('button', { type: 'button', class: 'rate-up', disabled: !canRate, onclick: send(1, false) }, `👍 ${t('rate_up')}`),
      el('button', { type: 'button', class: 'rate-down', disabled: !canRate, onclick: send(-1, false) }, `👎 ${t('rate_down')}`)),
    el('label', { for: cid, text: t('correction') }),
    correction,
    el('div', { class: 'buttons' },
      el('button', { type: 'button', class: 'send-correction', disabled: !canRate, onclick: send(-1, true),
        text: t('send_correction') })),
    status);
}

async function sendFeedback(a, statusNode, rating, needCorrection) {
  const text = (a.draft || '').trim();
  if (needCorrection && !text) {
    a.fb = t('correction_required'); a.fbError = true;
    statusNode.className = 'feedback-status error'; statusNode.textContent = a.fb;
    return;
  }
  const correction = rating < 0 && text ? text : null;
  try {
    const data = await api('POST', `/api/runs/${enc(state.answersFor)}/feedback`,
      { response_id: a.response_id, rating, correction });
    a.fb = t('feedback_sent', { id: data.id ?? '', status: statusLabel(data.status || 'pending') });
    a.fbError = false;
  } catch (e) {
    a.fb = e.message; a.fbError = true;
    showError(e);
  }
  statusNode.className = a.fbError ? 'feedback-status error' : 'feedback-status';
  statusNode.textContent = a.fb;
}

// ------------------------------------------------------------------------------------------ 5. review
async function loadReview() {
  const id = state.runId;
  $('#next-iteration').disabled = !id;
  $('#reload-review').disabled = !id;
  if (!id) {
    state.review = null;
    clear($('#review-table'));
    showEmpty('#review-empty', 'no_run_selected');
    return;
  }
  const data = await api('GET', `/api/runs/${enc(id)}/review?status=pending`);
  if (state.runId !== id) return;
  state.review = (data.data || []).map((r) => ({ ...r, draft: r.correction || '' }));
  renderReview();
}

function renderReview() {
  const tbl = clear($('#review-table'));
  const rows = state.review || [];
  showEmpty('#review-empty', rows.length ? null : 'no_pending');
  if (!rows.length) return;
  table(tbl, ['#', t('col_question'), t('col_served'), t('col_rating'), t('col_correction'), t('col_actions')],
    rows.map(reviewRow));
}

function reviewRow(r) {
  const cid = `review-correction-${r.id}`;
  return el('tr', { 'data-fid': r.id },
    el('td', { class: 'num', text: String(r.id) }),
    el('td', { text: r.question || t('none') }),
    el('td', { text: r.response || t('none') }),
    el('td', { text: r.rating > 0 ? '👍' : r.rating < 0 ? '👎' : t('none') }),
    el('td', {}, el('label', { class: 'sr-only', for: cid, text: `${t('col_correction')} #${r.id}` }),
      el('textarea', { id: cid, class: 'review-correction', rows: 2, value: r.draft,
        oninput: (ev) => { r.draft = ev.target.value; } })),
    el('td', {}, el('div', { class: 'buttons' },
      el('button', { type: 'button', class: 'approve', text: t('approve'), onclick: guard(() => decide(r, 'approve')) }),
      el('button', { type: 'button', class: 'reject', text: t('reject'), onclick: guard(() => decide(r, 'reject')) }))));
}

async function decide(r, decision) {
  clearError();
  const id = state.runId;
  const text = (r.draft || '').trim();
  const data = await api('POST', `/api/runs/${enc(id)}/review/${enc(r.id)}/${decision}`,
    { note: '', correction: text || null });
  setText($('#review-status'), 'reviewed', { id: r.id, status: (data && data.status) || decision });
  await loadReview();
}

async function nextIteration() {
  clearError();
  const id = state.runId;
  if (!id) { showError(new Error(t('no_run_selected'))); return; }
  const data = await api('POST', `/api/runs/${enc(id)}/iterate`);
  setText($('#review-status'), 'iteration_started', { id: data.run.id });
  await followRun(data.run);
}

// ------------------------------------------------------------------------------------------ start
function bind() {
  VIEWS.forEach((v) => $(`#nav-${v}`).addEventListener('click', guard(() => { clearError(); return showView(v); })));
  $('#lang').addEventListener('change', (ev) => setLang(ev.target.value));
  $('#run-select').addEventListener('change', guard((ev) => chooseRun(ev.target.value)));
  $('#key-form').addEventListener('submit', saveKey);
  $('#new-project-form').addEventListener('submit', guard(createProject));
  $('#gates-form').addEventListener('submit', guard(saveGates));
  $('#add-gate').addEventListener('click', addGate);
  $('#start-run-form').addEventListener('submit', guard(startRun));
  $('#refresh-runs').addEventListener('click', guard(loadRuns));
  $('#cancel-run').addEventListener('click', guard(cancelRun));
  $('#open-ladder').addEventListener('click', guard(openLadderFor));
  $('#playground-form').addEventListener('submit', guard(ask));
  $('#reload-review').addEventListener('click', guard(loadReview));
  $('#next-iteration').addEventListener('click', guard(nextIteration));
}

async function init() {
  state.key = stored('session', STORE_KEY);
  state.lang = pickLang();
  $('#lang').value = state.lang;
  applyStatic();
  bind();
  const results = await Promise.allSettled([loadMetrics(), loadRuns()]);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) showError(failed.reason);
  const hash = (location.hash || '').slice(1);
  await showView(VIEWS.includes(hash) ? hash : 'projects');
}

init().catch(showError);

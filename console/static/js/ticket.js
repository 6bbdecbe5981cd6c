// One ticket: device card and history, the user's text, photos (lightbox), voice with WeChat's transcript, the
// robot's attempt, messages, the audit trail, and the actions this user may take. Reloads itself on live events.

import { api, currentUser } from './api.js';
import { empty, facts, fmtPercent, fmtTime, h, replace, select } from './dom.js';
import { onLiveEvent, setViewing, STATE_LABELS } from './live.js';
import { stateBadge, TIER_LABELS } from './queue.js';
import { badge, busy, errorBox, flash, openLightbox } from './ui.js';

const ROLE_LABELS = { agent: '客服', engineer: '工程师', admin: '管理员', reporter: '报修人', system: '系统', robot: '机器人' };
const ACTION_LABELS = {
  reply: '回复报修人', note: '工作备注', accept: '工程师接单', take: '客服接单', reassign: '改派工程师',
  save_to_kb: '保存到知识库', assign: '派工',
};
const DELIVERY_LABELS = { pending: '发送中', sent: '已送达微信', failed: '发送失败', internal: '内部' };
const CHANNEL_LABELS = { h5: '扫码报修页', wechat: '公众号对话', mp: '小程序', console: '控制台', iot: '设备告警' };
const DEVICE_STATUS = { in_service: '在用', under_repair: '维修中', retired: '已报废' };

let number = null;
let root = null;
let unsubscribe = null;
let reloadTimer = null;
let cannedCache = null;
// What the agent is typing or choosing (controls marked data-keep) survives the re-render a live event causes;
// a control's entry is dropped once its action succeeded.
const kept = new Map();
let sending = null; // the ticket whose reply is on its way: a re-rendered form must not send it twice

export function title(n) { return `工单 ${n}`; }

function keep(ev) {
  const el = ev.target;
  if (el && el.id && el.dataset && el.dataset.keep !== undefined) kept.set(el.id, el.value);
}

/** Puts kept values back (also called when a select's options arrive later). */
function restore(scope) {
  for (const el of scope.querySelectorAll('[data-keep]')) {
    if (!kept.has(el.id)) continue;
    const value = kept.get(el.id);
    if (el.tagName === 'SELECT' && ![...el.options].some((o) => o.value === value)) continue;
    el.value = value;
  }
}

function forget(...ids) { ids.forEach((id) => kept.delete(id)); }

export function render(container, ticketNumber) {
  if (ticketNumber !== number) kept.clear();
  number = ticketNumber;
  container.addEventListener('input', keep);
  container.addEventListener('change', keep);
  root = container;
  setViewing(number);
  replace(container, empty('正在加载工单…'));
  unsubscribe = onLiveEvent((frame) => {
    if (frame.data && frame.data.number === number) {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(load, 150);
    }
  });
  load();
}

export function leave() {
  if (root) { root.removeEventListener('input', keep); root.removeEventListener('change', keep); }
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
  clearTimeout(reloadTimer);
  setViewing(null);
  root = null;
}

function normalise(body) {
  // Tolerate {ticket: {...}, device: …} as well as a flat ticket object.
  return body && body.ticket && typeof body.ticket === 'object' ? { ...body, ...body.ticket } : body || {};
}

let loads = 0;

async function load() {
  if (!root) return;
  const view = root;
  const mine = ++loads; // answers may come back out of order: only the latest request renders
  let t;
  try {
    t = normalise(await api.get(`/tickets/${encodeURIComponent(number)}`));
  } catch (err) {
    if (view === root && mine === loads) replace(view, h('section', { class: 'panel' }, empty(err.status === 403 ? `无权查看该工单：${err.message}` : err.message),
      h('p', null, h('a', { href: '#/queue', text: '返回工单队列' }))));
    return;
  }
  if (view !== root || mine !== loads) return;
  const focused = document.activeElement && view.contains(document.activeElement) ? document.activeElement : null;
  const focus = focused && focused.id ? { id: focused.id, start: focused.selectionStart, end: focused.selectionEnd } : null;
  // An open "save to knowledge base" form, with what is typed in it, survives the re-render too.
  const openForms = [...view.querySelectorAll('.kb-form')].map((form) => ({ form, slot: slotSelector(form.parentElement) }));
  replace(view, h('div', { class: 'ticket-layout' },
    h('div', { class: 'ticket-main' }, header(t), report(t), robot(t), conversation(t), actions(t)),
    h('aside', { class: 'ticket-side' }, deviceCard(t), people(t), trail(t))));
  restore(view);
  for (const { form, slot } of openForms) {
    const target = slot && view.querySelector(slot);
    if (target) target.appendChild(form);
  }
  const again = focus && document.getElementById(focus.id);
  if (again) {
    again.focus();
    if (typeof focus.start === 'number' && again.setSelectionRange) again.setSelectionRange(focus.start, focus.end);
  }
}

/** Where a kb form sits, found again in the new render: a message by its id, or the reply box's slot. */
function slotSelector(el) {
  if (!el) return null;
  if (el.id) return `#${CSS.escape(el.id)}`;
  if (el.dataset && el.dataset.id) return `li.message[data-id="${CSS.escape(el.dataset.id)}"]`;
  return null;
}

function allowed(t, action) {
  const list = t.actions || t.allowed_actions;
  if (Array.isArray(list)) return list.includes(action);
  if (list && typeof list === 'object') return Boolean(list[action]);
  return true; // the server decides
}

function personName(p) {
  if (!p) return '';
  return typeof p === 'object' ? p.name || p.username || '' : String(p);
}

// -- the parts ------------------------------------------------------------------------------------------------------
function header(t) {
  const where = [t.hospital && t.hospital.name, t.department && (t.department.name || t.department)].filter(Boolean).join(' · ');
  return h('section', { class: 'panel ticket-head' },
    h('div', { class: 'ticket-head-row' },
      h('div', null,
        h('p', { class: 'eyebrow', text: '工单号' }),
        h('h2', { class: 'ticket-number mono', id: 'ticket-number', text: t.number })),
      h('div', { class: 'ticket-badges' },
        h('span', { id: 'ticket-state', dataset: { state: t.state } }, stateBadge(t.state, t.state_label)),
        t.tier ? badge(`${TIER_LABELS[t.tier] || t.tier}故障`, `tier-${t.tier}`) : null,
        t.kind === 'preventive' ? badge('预防性维护', 'muted') : null)),
    facts([['医院', where], ['报修人', t.reporter ? [t.reporter.name, t.reporter.phone].filter(Boolean).join(' ') : (t.contact || '匿名报修')], ['报修渠道', CHANNEL_LABELS[t.channel] || t.channel || ''],
      ['报修时间', fmtTime(t.created_at)], ['最近更新', fmtTime(t.updated_at)]], 'facts facts-inline'));
}

function report(t) {
  const attachments = (t.attachments || []).filter((a) => a.from !== 'engineer');
  const photos = attachments.filter((a) => a.kind === 'photo' || a.kind === 'image');
  const voices = attachments.filter((a) => a.kind === 'voice' || a.kind === 'audio');
  const others = attachments.filter((a) => !photos.includes(a) && !voices.includes(a));
  const gallery = photos.map((p, i) => ({ url: p.url, caption: `现场照片 ${i + 1}` }));
  return h('section', { class: 'panel' },
    h('h3', { class: 'panel-title', text: '故障描述' }),
    t.description ? h('p', { class: 'user-text', id: 'ticket-description', text: t.description }) : h('p', { class: 'muted', text: '（报修人未填写文字描述）' }),
    photos.length ? h('div', { class: 'photo-grid' }, photos.map((p, i) => h('button', {
      type: 'button', class: 'photo-tile', attrs: { 'aria-label': `查看现场照片 ${i + 1}` }, on: { click: () => openLightbox(gallery, i) },
    }, h('img', { src: p.thumb_url || p.url, alt: `现场照片 ${i + 1}`, loading: 'lazy' })))) : null,
    voices.length ? h('ul', { class: 'voice-list' }, voices.map((v, i) => h('li', { class: 'voice-item' },
      h('span', { class: 'voice-name', text: `语音 ${i + 1}` }),
      h('audio', { controls: true, preload: 'metadata', src: v.url }),
      h('p', { class: 'transcript' }, h('span', { class: 'muted', text: '微信识别：' }), v.transcript || '（无识别文字）')))) : null,
    others.length ? h('ul', { class: 'plain-list' }, others.map((o, i) => h('li', null, h('a', { href: o.url, target: '_blank', rel: 'noopener', text: `附件 ${i + 1}` })))) : null);
}

function robot(t) {
  const answer = t.robot_answer ?? (t.robot && t.robot.answer);
  const confidence = t.robot_confidence ?? (t.robot && t.robot.confidence);
  if (!answer && (confidence === null || confidence === undefined)) return null;
  const value = Number(confidence);
  const level = value >= 0.75 ? 'high' : value >= 0.45 ? 'mid' : 'low';
  const meter = h('div', { class: `confidence confidence-${level}` }, h('div', { class: 'confidence-bar' }));
  meter.firstChild.style.width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`; // CSSOM: allowed under the CSP
  return h('section', { class: 'panel robot-panel' },
    h('h3', { class: 'panel-title', text: '机器人的回答' }),
    h('div', { class: 'robot-confidence' }, h('span', { class: 'muted', text: '置信度' }), meter, h('strong', { id: 'robot-confidence', text: fmtPercent(confidence, 0) })),
    answer ? h('p', { class: 'user-text', text: answer }) : h('p', { class: 'muted', text: '（机器人未作答）' }));
}

function conversation(t) {
  const messages = t.messages || [];
  return h('section', { class: 'panel' },
    h('h3', { class: 'panel-title', text: `沟通记录（${messages.length}）` }),
    messages.length ? h('ol', { class: 'messages', id: 'messages' }, messages.map((m) => message(t, m))) : h('p', { class: 'muted', text: '还没有回复或备注' }));
}

function message(t, m) {
  const role = m.author_role || 'system';
  const author = personName(m.author) || m.author_label || ROLE_LABELS[role] || '';
  const byId = new Map((t.attachments || []).map((a) => [a.id, a]));
  const photos = (m.attachments || []).map((a) => (typeof a === 'object' ? a : byId.get(a)))
    .filter((a) => a && (a.kind === 'photo' || a.kind === 'image'));
  const gallery = photos.map((p, i) => ({ url: p.url, caption: `${author} 的照片 ${i + 1}` }));
  const canSave = m.kind === 'reply' && role !== 'engineer' && allowed(t, 'save_to_kb') && currentUser().role !== 'engineer';
  return h('li', { class: `message message-${role} message-${m.kind || 'note'}`, dataset: { id: String(m.id || '') } },
    h('div', { class: 'message-head' },
      h('strong', { text: author }),
      h('span', { class: 'tag', text: ACTION_LABELS[m.kind] || m.kind || '' }),
      m.via ? h('span', { class: 'tag', text: m.via === 'template' ? '模板消息' : '客服消息' }) : null,
      m.delivery && m.delivery !== 'internal' ? badge(DELIVERY_LABELS[m.delivery] || m.delivery, `delivery-${m.delivery}`) : null,
      h('time', { class: 'muted', text: fmtTime(m.created_at) })),
    m.text ? h('p', { class: 'user-text message-text', text: m.text }) : null,
    m.delivery === 'failed' && m.delivery_error ? h('p', { class: 'alert alert-error', text: `未能送达：${m.delivery_error}` }) : null,
    photos.length ? h('div', { class: 'photo-grid photo-grid-small' }, photos.map((p, i) => h('button', { type: 'button', class: 'photo-tile', on: { click: () => openLightbox(gallery, i) } },
      h('img', { src: p.thumb_url || p.url, alt: gallery[i].caption, loading: 'lazy' })))) : null,
    canSave ? h('button', { type: 'button', class: 'btn btn-link btn-sm', text: '保存到知识库', on: { click: (ev) => kbForm(ev.currentTarget.parentElement, t, m.text) } }) : null);
}

function actions(t) {
  const parts = [];
  if (allowed(t, 'take')) parts.push(takeBox(t));
  if (allowed(t, 'reply')) parts.push(replyBox(t));
  const row = [];
  if (allowed(t, 'resolve')) row.push(resolveBox(t));
  if (allowed(t, 'assign')) row.push(assignBox(t));
  if (row.length) parts.push(h('div', { class: 'action-row' }, row));
  const closeReopen = [];
  if (allowed(t, 'close')) closeReopen.push(stateButton(t, 'close', '关闭工单', 'btn-ghost'));
  if (allowed(t, 'reopen')) closeReopen.push(stateButton(t, 'reopen', '重新打开', 'btn-ghost'));
  if (closeReopen.length) parts.push(h('section', { class: 'panel action-bar' }, closeReopen));
  if (currentUser().role === 'engineer' && t.engineer && t.engineer.id === currentUser().id) {
    parts.push(h('section', { class: 'panel action-bar' }, h('span', { class: 'muted', text: '接单、工作记录和完工请在微信派工消息打开的工单页面中操作。' })));
  }
  return parts.length ? h('div', { class: 'actions', id: 'ticket-actions' }, parts) : null;
}

function takeBox(t) {
  const button = h('button', { type: 'button', class: 'btn btn-primary', id: 'take-btn', text: '我来处理（接单）' });
  button.addEventListener('click', () => busy(button, async () => { await api.post(`/tickets/${encodeURIComponent(t.number)}/take`); flash('已接单'); await load(); }));
  const owner = personName(t.agent);
  const mine = t.agent && t.agent.id === currentUser().id;
  const why = mine ? `工单当前为“${STATE_LABELS[t.state] || t.state}”，接单后继续处理。` : (owner ? `当前由 ${owner} 负责。` : '该工单还没有客服负责。');
  return h('section', { class: 'panel action-bar' }, h('span', { class: 'muted', text: why }), button);
}

async function cannedReplies() {
  if (!cannedCache) {
    const body = await api.get('/canned-replies');
    cannedCache = Array.isArray(body) ? body : body.items || body.replies || [];
  }
  return cannedCache;
}

function replyBox(t) {
  const text = h('textarea', { id: 'reply-text', class: 'input', rows: 4, maxLength: 2000, placeholder: '回复报修人（通过微信发送）', dataset: { keep: '' } });
  const via = select([['custom', '客服消息（48 小时内有互动）'], ['template', '模板消息']], { id: 'reply-via', class: 'input', dataset: { keep: '' }, attrs: { 'aria-label': '发送方式' } });
  const canned = select([['', '常用回复…']], { id: 'canned-select', class: 'input', attrs: { 'aria-label': '常用回复' } });
  cannedReplies().then((list) => {
    for (const c of list) canned.appendChild(h('option', { value: String(c.id), text: c.title || (c.text || '').slice(0, 20) }));
  }, () => { canned.disabled = true; });
  canned.addEventListener('change', () => {
    const chosen = (cannedCache || []).find((c) => String(c.id) === canned.value);
    if (chosen) { text.value = text.value ? `${text.value}\n${chosen.text}` : chosen.text; kept.set(text.id, text.value); text.focus(); }
    canned.value = '';
  });
  const problem = errorBox();
  const send = h('button', { type: 'submit', class: 'btn btn-primary', id: 'reply-send', text: '发送回复', disabled: sending === t.number });
  const saveCanned = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: '存为常用回复' });
  saveCanned.addEventListener('click', () => {
    if (!text.value.trim()) { problem.textContent = '请先输入回复内容'; problem.hidden = false; return; }
    busy(saveCanned, async () => {
      await api.post('/canned-replies', { title: text.value.trim().slice(0, 20), text: text.value.trim(), hospital_id: t.hospital ? t.hospital.id : undefined });
      cannedCache = null;
      flash('已存为常用回复');
    }, problem);
  });
  const kbButton = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: '保存到知识库' });
  const kbSlot = h('div', { id: 'reply-kb-slot' });
  kbButton.addEventListener('click', () => kbForm(kbSlot, t, text.value));
  const form = h('form', { class: 'panel reply-box', id: 'reply-form' },
    h('h3', { class: 'panel-title', text: '回复报修人' }), text,
    h('div', { class: 'reply-tools' }, canned, via, h('span', { class: 'spacer' }), saveCanned,
      allowed(t, 'save_to_kb') && currentUser().role !== 'engineer' ? kbButton : null, send),
    problem, kbSlot);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!text.value.trim()) { problem.textContent = '请输入回复内容'; problem.hidden = false; return; }
    if (sending) return;
    sending = t.number;
    busy(send, async () => {
      const sent = text.value;
      let answer;
      try {
        answer = await api.post(`/tickets/${encodeURIComponent(t.number)}/reply`, { text: sent, via: via.value });
      } finally {
        sending = null;
      }
      const now = document.getElementById('reply-text'); // a live re-render may have replaced the form meanwhile
      if (kept.get('reply-text') === sent) forget('reply-text');
      if (now && now.value === sent) now.value = '';
      text.value = '';
      const delivery = answer && (answer.delivery || (answer.message && answer.message.delivery));
      flash(delivery === 'failed' ? '回复已保存，但微信发送失败（见沟通记录）' : '回复已发送', delivery === 'failed' ? 'error' : 'ok');
      await load();
    }, problem);
  });
  return form;
}

function resolveBox(t) {
  const note = h('input', { class: 'input', type: 'text', id: 'resolve-note', maxLength: 500, placeholder: '远程处理说明（选填）', dataset: { keep: '' } });
  const button = h('button', { type: 'submit', class: 'btn btn-ghost', id: 'resolve-btn', text: '远程解决' });
  const problem = errorBox();
  const form = h('form', { class: 'panel action-box' }, h('h3', { class: 'panel-title', text: '远程处理' }), note, h('div', { class: 'form-actions' }, button), problem);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(button, async () => { await api.post(`/tickets/${encodeURIComponent(t.number)}/resolve`, { note: note.value }); forget('resolve-note'); flash('已更新工单'); await load(); }, problem);
  });
  return form;
}

const engineerLists = new Map(); // hospital id → the engineers' list, asked once per page load

function engineersOf(hospitalId) {
  if (!engineerLists.has(hospitalId)) {
    const asked = api.get('/engineers', { hospital_id: hospitalId }).then((body) => (Array.isArray(body) ? body : body.items || []));
    asked.catch(() => engineerLists.delete(hospitalId)); // ask again next time
    engineerLists.set(hospitalId, asked);
  }
  return engineerLists.get(hospitalId);
}

function assignBox(t) {
  const engineer = select([['', '选择工程师…']], { id: 'assign-engineer', class: 'input', dataset: { keep: '' }, attrs: { 'aria-label': '工程师' } });
  const note = h('input', { class: 'input', type: 'text', id: 'assign-note', maxLength: 500, placeholder: '给工程师的说明（选填）', dataset: { keep: '' } });
  const current = t.engineer ? t.engineer.id : null;
  const button = h('button', { type: 'submit', class: 'btn btn-primary', id: 'assign-btn', text: current ? '改派' : '派工' });
  const problem = errorBox();
  engineersOf(t.hospital ? t.hospital.id : '').then((list) => {
    for (const e of list) engineer.appendChild(h('option', { value: String(e.id), text: `${e.name || e.username}${e.id === current ? '（当前）' : ''}` }));
    if (kept.has(engineer.id) && list.some((e) => String(e.id) === kept.get(engineer.id))) engineer.value = kept.get(engineer.id);
  }, (err) => { problem.textContent = err.message; problem.hidden = false; });
  const form = h('form', { class: 'panel action-box' }, h('h3', { class: 'panel-title', text: current ? '改派工程师' : '派给工程师' }), engineer, note, h('div', { class: 'form-actions' }, button), problem);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!engineer.value) { problem.textContent = '请选择工程师'; problem.hidden = false; return; }
    busy(button, async () => {
      await api.post(`/tickets/${encodeURIComponent(t.number)}/assign`, { engineer_id: Number(engineer.value), note: note.value });
      forget('assign-engineer', 'assign-note');
      flash('已派工，工程师会收到微信通知');
      await load();
    }, problem);
  });
  return form;
}

function stateButton(t, action, label, kind) {
  const button = h('button', { type: 'button', class: `btn ${kind}`, id: `${action}-btn`, text: label });
  button.addEventListener('click', () => {
    if (action === 'close' && !window.confirm(`确定关闭工单 ${t.number}？`)) return;
    busy(button, async () => { await api.post(`/tickets/${encodeURIComponent(t.number)}/${action}`); flash(`${label}：完成`); await load(); });
  });
  return button;
}

/** "Save this reply to the knowledge base": as a new wording of the robot's entry, or as a new entry. */
function kbForm(slot, t, answerText) {
  const existing = slot.querySelector('.kb-form');
  if (existing) { existing.remove(); return; }
  const entryGuess = t.robot_entry_id || (t.robot && t.robot.entry_id) || '';
  const kind = select([['variant', '作为已有条目的新问法'], ['entry', '新建知识条目（管理员审批后生效）']], { class: 'input', value: entryGuess ? 'variant' : 'entry' });
  const question = h('input', { class: 'input', type: 'text', maxLength: 256, value: (t.description || '').slice(0, 256) });
  const entryId = h('input', { class: 'input mono', type: 'text', maxLength: 64, value: entryGuess, placeholder: '例如 vent-e05' });
  const answer = h('textarea', { class: 'input', rows: 3, maxLength: 2000, value: answerText || '' });
  const deviceType = h('input', { class: 'input', type: 'text', maxLength: 32, value: (t.device && t.device.device_type) || '' });
  const tier = select([['basic', '基础'], ['advanced', '高级']], { class: 'input', value: t.tier || 'basic' });
  const problem = errorBox();
  const save = h('button', { type: 'submit', class: 'btn btn-primary btn-sm', text: '保存' });
  const onlyEntry = [h('label', { class: 'form-field' }, h('span', { class: 'field-label', text: '答案' }), answer),
    h('label', { class: 'form-field' }, h('span', { class: 'field-label', text: '设备类型' }), deviceType),
    h('label', { class: 'form-field' }, h('span', { class: 'field-label', text: '级别' }), tier)];
  const sync = () => onlyEntry.forEach((el) => { el.hidden = kind.value !== 'entry'; });
  kind.addEventListener('change', sync);
  const form = h('form', { class: 'kb-form' },
    h('label', { class: 'form-field' }, h('span', { class: 'field-label', text: '保存方式' }), kind),
    h('label', { class: 'form-field' }, h('span', { class: 'field-label', text: '用户的问题' }), question),
    h('label', { class: 'form-field' }, h('span', { class: 'field-label', text: '条目 ID' }), entryId),
    onlyEntry, problem, h('div', { class: 'form-actions' }, save));
  sync();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(save, async () => {
      await api.post(`/tickets/${encodeURIComponent(t.number)}/save-to-kb`, {
        kind: kind.value, entry_id: entryId.value.trim(), question: question.value, answer: answer.value, device_type: deviceType.value, tier: tier.value,
      });
      flash(kind.value === 'variant' ? '已加入知识库，机器人立即可用' : '已提交新条目，等待管理员审批');
      form.remove();
    }, problem);
  });
  slot.appendChild(form);
}

function deviceCard(t) {
  const d = t.device;
  const history = t.device_history || (d && (d.history || d.recent_tickets)) || [];
  if (!d && !t.group) return h('section', { class: 'panel' }, h('h3', { class: 'panel-title', text: '设备' }), h('p', { class: 'muted', text: '未关联设备' }));
  const card = d ? h('div', { class: 'device-card', id: 'device-card' },
    h('p', { class: 'device-name', text: d.name }),
    facts([['类型', d.device_type_label || d.device_type || ''], ['型号', [d.manufacturer, d.model].filter(Boolean).join(' ')],
      ['系统编号', d.system_number], ['铭牌号', d.nameplate_id], ['科室', d.department && (d.department.name || d.department)],
      ['设备组', d.group || ''], ['负责人', d.owner || ''], ['状态', d.status_label || DEVICE_STATUS[d.status] || d.status],
      ['维护评分', d.maintenance_score ?? ''], ['维修次数', d.repair_count ?? ''], ['安装日期', d.install_date || '']]))
    : null;
  const group = t.group ? h('div', { class: 'device-card' }, h('p', { class: 'device-name', text: `设备组：${t.group.name || ''}` }),
    (t.members || t.member_devices || []).length ? h('ul', { class: 'plain-list' }, (t.members || t.member_devices).map((m) => h('li', { text: `${m.name}（${m.system_number}）` }))) : null) : null;
  return h('section', { class: 'panel' }, h('h3', { class: 'panel-title', text: '设备' }), card, group,
    history.length ? h('div', null, h('h4', { class: 'sub-title', text: '近期维修记录' }), h('ul', { class: 'history-list' }, history.map((x) => h('li', null,
      h('a', { href: `#/tickets/${encodeURIComponent(x.number)}`, class: 'mono', text: x.number }), ' ',
      stateBadge(x.state, x.state_label), h('span', { class: 'muted', text: ` ${fmtTime(x.created_at, true)}` }),
      x.description ? h('p', { class: 'history-text', text: x.description }) : null)))) : null);
}

function people(t) {
  return h('section', { class: 'panel' }, h('h3', { class: 'panel-title', text: '处理人' }),
    facts([['客服', personName(t.agent) || '未分配'], ['工程师', h('span', { id: 'ticket-engineer', text: personName(t.engineer) || '未派工' })],
      ['工程师接单', t.engineer_accepted_at ? fmtTime(t.engineer_accepted_at) : (t.engineer ? '尚未接单' : '')]]));
}

function trail(t) {
  const rows = (t.transitions || t.history || t.audit || []).slice().reverse();
  return h('section', { class: 'panel' }, h('h3', { class: 'panel-title', text: '处理轨迹' }),
    rows.length ? h('ol', { class: 'timeline', id: 'audit-trail' }, rows.map((r) => {
      const to = r.to ?? r.to_state;
      const from = r.from ?? r.from_state;
      const label = r.label || (r.action ? (ACTION_LABELS[r.action] || r.action) : (STATE_LABELS[to] || to));
      const who = personName(r.actor) || r.actor_label || '';
      const actor = !who || who === 'system' ? '系统' : who;
      return h('li', { class: 'timeline-item' }, h('span', { class: 'timeline-dot', attrs: { 'aria-hidden': 'true' } }),
        h('div', { class: 'timeline-body' },
          h('div', { class: 'timeline-head' }, h('strong', { text: label }), h('time', { class: 'muted', text: fmtTime(r.created_at) })),
          h('div', { class: 'muted', text: from && !r.action ? `${actor} · ${STATE_LABELS[from] || from} → ${STATE_LABELS[to] || to}` : actor }),
          r.note ? h('p', { class: 'timeline-note', text: r.note }) : null));
    })) : h('p', { class: 'muted', text: '暂无记录' }));
}

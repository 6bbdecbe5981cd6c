// The ticket queue: tabs per state with unread counts, filters, a table that refreshes itself on live events.

import { api, currentUser } from './api.js';
import { empty, fmtAgo, fmtTime, h, replace, select } from './dom.js';
import { isUnread, noteStates, onLiveEvent, onLiveStatus, STATE_LABELS, unreadByState } from './live.js';
import { badge } from './ui.js';

export const TIER_LABELS = { basic: '基础', advanced: '高级' };
const TABS = [
  ['', '全部'], ['new', STATE_LABELS.new], ['answered_by_robot', STATE_LABELS.answered_by_robot],
  ['with_agent', STATE_LABELS.with_agent], ['remote', STATE_LABELS.remote],
  ['with_engineer', STATE_LABELS.with_engineer], ['done', STATE_LABELS.done], ['reopened', STATE_LABELS.reopened],
  ['closed', STATE_LABELS.closed],
];
const PAGE_SIZE_HINT = 50;

// Filters outlive a visit to a ticket: coming back shows the same list.
const filters = { state: '', hospital_id: '', tier: '', q: '', mine: false, page: 1 };
let root = null;
let tableBody = null;
let footer = null;
let tabButtons = new Map();
let fresh = new Set(); // numbers that arrived live since the last render: highlighted once
let reloadTimer = null;
let unsubscribe = [];
let loading = 0;

export function title() { return '工单队列'; }

export function stateBadge(state, label) {
  return badge(label || STATE_LABELS[state] || state, `state-${state}`);
}

export function render(container) {
  root = container;
  const user = currentUser();
  const hospitals = user.hospitals || [];
  const search = h('input', { type: 'search', class: 'input', placeholder: '工单号 / 设备 / 描述', value: filters.q, attrs: { 'aria-label': '搜索工单' } });
  let searchTimer = null;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { filters.q = search.value.trim(); filters.page = 1; load(); }, 300);
  });
  const hospitalFilter = select([['', '全部医院'], ...hospitals.map((x) => [x.id, x.name])],
    { class: 'input', value: filters.hospital_id, attrs: { 'aria-label': '医院' } });
  hospitalFilter.addEventListener('change', () => { filters.hospital_id = hospitalFilter.value; filters.page = 1; load(); });
  const tierFilter = select([['', '全部级别'], ['basic', '基础故障'], ['advanced', '高级故障']],
    { class: 'input', value: filters.tier, attrs: { 'aria-label': '故障级别' } });
  tierFilter.addEventListener('change', () => { filters.tier = tierFilter.value; filters.page = 1; load(); });
  const mine = h('input', { type: 'checkbox', checked: filters.mine, id: 'queue-mine' });
  mine.addEventListener('change', () => { filters.mine = mine.checked; filters.page = 1; load(); });

  tabButtons = new Map();
  const tabs = h('div', { class: 'tabs', attrs: { role: 'tablist' } }, TABS.map(([state, label]) => {
    const count = h('span', { class: 'count', hidden: true });
    const button = h('button', {
      type: 'button', class: 'tab', dataset: { state }, attrs: { role: 'tab' },
      on: { click: () => { filters.state = state; filters.page = 1; markTabs(); load(); } },
    }, h('span', { text: label }), count);
    tabButtons.set(state, { button, count });
    return button;
  }));

  tableBody = h('tbody', { id: 'queue-rows' });
  footer = h('div', { class: 'table-foot' });
  replace(container,
    h('section', { class: 'panel' },
      tabs,
      h('div', { class: 'toolbar' },
        search, hospitals.length > 1 ? hospitalFilter : null, tierFilter,
        h('label', { class: 'check' }, mine, h('span', { text: '只看我的' })),
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: '刷新', on: { click: () => load() } })),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'table queue-table' },
          h('thead', null, h('tr', null, ['工单号', '状态', '级别', '医院', '设备', '故障描述', '客服', '工程师', '更新'].map((t) => h('th', { text: t })))),
          tableBody)),
      footer));
  markTabs();
  unsubscribe = [
    onLiveEvent((frame) => { if (frame.data && frame.data.number) fresh.add(frame.data.number); scheduleReload(); }),
    onLiveStatus(() => markTabs()),
  ];
  load();
}

export function leave() {
  unsubscribe.forEach((fn) => fn());
  unsubscribe = [];
  clearTimeout(reloadTimer);
  root = null;
}

function markTabs() {
  const counts = unreadByState();
  for (const [state, { button, count }] of tabButtons) {
    button.classList.toggle('is-active', state === filters.state);
    button.setAttribute('aria-selected', String(state === filters.state));
    const n = state ? counts[state] || 0 : Object.values(counts).reduce((a, b) => a + b, 0);
    count.hidden = !n;
    count.textContent = String(n);
  }
}

function scheduleReload() {
  // A burst of events (a replay after reconnecting) becomes one request.
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(load, 150);
}

async function load() {
  if (!root) return;
  const mine = ++loading;
  let body;
  try {
    body = await api.get('/tickets', { state: filters.state, hospital_id: filters.hospital_id, tier: filters.tier, q: filters.q, mine: filters.mine, page: filters.page });
  } catch (err) {
    if (mine === loading && tableBody) replace(tableBody, h('tr', null, h('td', { attrs: { colspan: 9 } }, empty(err.message))));
    return;
  }
  if (mine !== loading || !root) return; // a newer request is on its way
  const items = body.items || [];
  noteStates(items);
  replace(tableBody, items.length ? items.map(row) : h('tr', null, h('td', { attrs: { colspan: 9 } }, empty('暂无工单'))));
  fresh = new Set();
  pager(body.total || 0, body.page_size || PAGE_SIZE_HINT);
  markTabs();
}

function person(p) { return p ? p.name : '—'; }

function row(t) {
  const open = () => { location.hash = `#/tickets/${encodeURIComponent(t.number)}`; };
  const unread = isUnread(t.number);
  const device = t.device ? `${t.device.name}（${t.device.system_number}）` : (t.group ? (t.group.name || '设备组') : '—');
  return h('tr', {
    class: `queue-row${unread ? ' is-unread' : ''}${fresh.has(t.number) ? ' is-new' : ''}`,
    dataset: { number: t.number, state: t.state }, tabIndex: 0,
    on: { click: open, keydown: (ev) => { if (ev.key === 'Enter') open(); } },
  },
  h('td', { class: 'mono nowrap' }, unread ? h('span', { class: 'unread-dot', attrs: { 'aria-label': '未读' } }) : null, t.number),
  h('td', null, stateBadge(t.state, t.state_label)),
  h('td', { class: 'nowrap' }, t.tier ? badge(TIER_LABELS[t.tier] || t.tier, `tier-${t.tier}`) : h('span', { class: 'muted', text: '待定' })),
  h('td', { class: 'nowrap', text: t.hospital ? t.hospital.name : '—' }),
  h('td', { class: 'nowrap', text: device }),
  h('td', { class: 'description-cell', text: t.description || '（无文字描述）', title: t.description || '' }),
  h('td', { class: 'nowrap', text: person(t.agent) }),
  h('td', { class: 'nowrap', text: person(t.engineer) }),
  h('td', { class: 'nowrap muted', text: fmtAgo(t.updated_at || t.created_at), title: fmtTime(t.updated_at || t.created_at) }));
}

function pager(total, pageSize) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  const prev = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: '上一页', disabled: filters.page <= 1,
    on: { click: () => { filters.page -= 1; load(); } } });
  const next = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: '下一页', disabled: filters.page >= pages,
    on: { click: () => { filters.page += 1; load(); } } });
  replace(footer, h('span', { class: 'muted', text: `共 ${total} 条 · 第 ${filters.page} / ${pages} 页` }), h('span', { class: 'pager' }, prev, next));
}

// Device health (IoT early warning): the open alerts, highest risk first, and one device's readings, alerts and risk.
// Routes: #/alerts and #/devices/<id>/health. Numbers come from the server (monitoring/); this only draws them.

import { api } from './api.js';
import { empty, facts, fmtAgo, fmtNumber, fmtTime, h, replace, select } from './dom.js';
import { STATE_LABELS, onLiveEvent } from './live.js';

const BAND_CLASS = { high: 'risk-high', medium: 'risk-medium', low: 'risk-low' };
const METRIC_LABELS = {
  temperature: '温度', pressure: '压力', humidity: '湿度', run_hours: '运行时长', cycle_count: '循环次数',
  vibration: '振动', voltage: '电压', current: '电流', error_code: '错误码',
};
let charts = [];
let alive = false;
let listing = null; // {container, state} of the alerts list on screen: it follows alerts pushed over the live queue
let following = false;

function follow() {
  if (following) return; // one listener for the page's life: a listener added while events are handed out would get them too
  following = true;
  onLiveEvent((frame) => {
    if (frame.event !== 'device.alert' || !alive || !listing) return;
    const { container, state } = listing;
    setTimeout(() => { if (alive && listing && listing.container === container) list(container, state); }, 0);
  });
}

export function title(id) { return id ? '设备健康' : '设备预警'; }

export function render(container, id) {
  alive = true;
  if (id) device(container, id, 24); else list(container, 'open');
}

export function leave() {
  alive = false;
  charts.forEach((c) => c.destroy());
  charts = [];
  listing = null;
}

function risk(score, band) {
  return h('span', { class: `tag ${BAND_CLASS[band] || ''}`, text: `风险 ${score}` });
}

function ticketLink(ticket) {
  if (!ticket) return '—';
  return h('a', { href: `#/tickets/${encodeURIComponent(ticket.number)}`, text: `${ticket.number}（${STATE_LABELS[ticket.state] || ticket.state}）` });
}

async function list(container, state) {
  listing = { container, state };
  follow();
  const filter = select([['open', '未处理'], ['closed', '已关闭'], ['all', '全部']], { class: 'input', value: state, attrs: { 'aria-label': '预警状态' } });
  filter.addEventListener('change', () => list(container, filter.value));
  const body = h('div', null, empty('正在加载…'));
  replace(container, h('section', { class: 'panel' }, h('div', { class: 'toolbar' }, filter), body));
  let data;
  try { data = await api.get('/alerts', { state }); } catch (err) { replace(body, empty(err.message)); return; }
  if (!alive) return;
  if (!data.alerts.length) { replace(body, empty('暂无设备预警')); return; }
  replace(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'alerts-table' },
    h('thead', null, h('tr', null, ['风险', '设备', '预警', '证据', '次数', '最近', '工单'].map((t) => h('th', { text: t })))),
    h('tbody', null, data.alerts.map((a) => h('tr', { dataset: { alert: a.id } },
      h('td', null, risk(a.risk_score, a.risk_band)),
      h('td', null, h('a', { href: `#/devices/${a.device_id}/health`, text: `${a.device.name}（${a.device.system_number}）` })),
      h('td', { text: `${a.title} · ${a.severity_label}` }),
      h('td', { text: a.text }),
      h('td', { text: a.hits }),
      h('td', { text: fmtAgo(a.last_seen_at) }),
      h('td', null, ticketLink(a.ticket))))))));
}

async function device(container, id, hours) {
  listing = null;
  const range = select([[6, '近 6 小时'], [24, '近 24 小时'], [168, '近 7 天'], [720, '近 30 天']], { class: 'input', value: hours, attrs: { 'aria-label': '时间范围' } });
  range.addEventListener('change', () => device(container, id, Number(range.value)));
  const body = h('div', null, empty('正在加载…'));
  replace(container, h('section', { class: 'panel' }, h('div', { class: 'toolbar' }, h('a', { href: '#/alerts', text: '← 设备预警' }), h('span', { class: 'spacer' }), range)), body);
  let d;
  try { d = await api.get(`/devices/${encodeURIComponent(id)}/health`, { hours }); } catch (err) { replace(body, empty(err.message)); return; }
  if (!alive) return;
  leave();
  alive = true;
  const latest = Object.entries(d.latest).map(([m, v]) => [METRIC_LABELS[m] || m, `${typeof v.value === 'number' ? fmtNumber(v.value, 2) : v.value}（${fmtTime(v.at, true)}）`]);
  replace(body,
    h('div', { class: 'split' },
      h('section', { class: 'panel', id: 'device-card' }, h('h2', { class: 'panel-title', text: `${d.device.name}（${d.device.system_number}）` }),
        facts([['类型', d.device.device_type_label], ['型号', d.device.model], ['维护评分', d.profile.maintenance_score],
          ['近12个月故障', `${d.profile.faults_12m.basic + d.profile.faults_12m.advanced + d.profile.faults_12m.unknown} 次`],
          ['相对同类风险', d.profile.relative_risk === null ? '—' : `${d.profile.relative_risk} 倍`]])),
      h('section', { class: 'panel', id: 'device-risk' }, h('h2', { class: 'panel-title' }, '当前风险 ', risk(d.risk.score, d.risk.band)),
        d.risk.reasons.length ? h('ul', null, d.risk.reasons.map((r) => h('li', { text: r }))) : empty('维护记录无异常'),
        latest.length ? facts(latest) : empty('尚无读数'))),
    h('div', { class: 'charts', id: 'device-charts' }),
    h('section', { class: 'panel' }, h('h2', { class: 'panel-title', text: '预警记录' }),
      d.alerts.length ? h('table', { class: 'table', id: 'device-alerts' },
        h('thead', null, h('tr', null, ['状态', '预警', '证据', '风险', '开始', '工单'].map((t) => h('th', { text: t })))),
        h('tbody', null, d.alerts.map((a) => h('tr', null,
          h('td', { text: a.state === 'open' ? '未处理' : '已关闭' }), h('td', { text: `${a.title} · ${a.severity_label}` }),
          h('td', { text: a.text }), h('td', null, risk(a.risk_score, a.risk_band)), h('td', { text: fmtTime(a.opened_at) }),
          h('td', null, ticketLink(a.ticket)))))) : empty('暂无预警')));
  drawSeries(body.querySelector('#device-charts'), d.series);
}

function drawSeries(grid, series) {
  const Chart = window.Chart;
  const metrics = Object.keys(series);
  if (!metrics.length) { grid.appendChild(empty('该时间段内没有读数')); return; }
  if (!Chart) { grid.appendChild(empty('图表组件未加载')); return; }
  for (const metric of metrics) {
    const points = series[metric];
    const canvas = h('canvas', { attrs: { role: 'img', 'aria-label': METRIC_LABELS[metric] || metric } });
    grid.appendChild(h('section', { class: 'chart-card', dataset: { metric } }, h('h2', { class: 'chart-title', text: METRIC_LABELS[metric] || metric }), h('div', { class: 'chart-box' }, canvas)));
    charts.push(new Chart(canvas, {
      type: 'line',
      data: {
        labels: points.map((p) => fmtTime(p.t, true)),
        datasets: [
          { label: '平均', data: points.map((p) => p.mean), borderColor: '#0b6bcb', pointRadius: 0, tension: 0.2 },
          { label: '最高', data: points.map((p) => p.max), borderColor: '#d03050', pointRadius: 0, borderDash: [4, 3] },
          { label: '最低', data: points.map((p) => p.min), borderColor: '#18a058', pointRadius: 0, borderDash: [4, 3] },
        ],
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { position: 'bottom' } }, scales: { x: { ticks: { maxTicksLimit: 8 } } } },
    }));
  }
}

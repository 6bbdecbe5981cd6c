// The dashboard: figures computed by the server (repair/), drawn with the vendored Chart.js; CSV/XLSX export links.

import { api, BASE, currentUser, query } from './api.js';
import { empty, fmtNumber, fmtPercent, h, replace, select } from './dom.js';
import { STATE_LABELS } from './live.js';

const PALETTE = ['#0b6bcb', '#18a058', '#f0a020', '#d03050', '#7c5cd6', '#2bb3c0', '#8a6d3b', '#5b6b7f', '#e0609a'];
const STATE_COLOURS = {
  new: '#0b6bcb', answered_by_robot: '#2bb3c0', with_agent: '#7c5cd6', remote: '#5b8def', with_engineer: '#f0a020',
  done: '#18a058', closed: '#9aa4b2', reopened: '#d03050',
};
const filters = { hospital_id: '', since: '', until: '' };
let charts = [];
let root = null;

export function title() { return '数据看板'; }

function isoDay(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function render(container) {
  root = container;
  if (!filters.since) {
    const today = new Date();
    filters.until = isoDay(today); // the server counts the whole of the until day
    filters.since = isoDay(new Date(today.getTime() - 364 * 86400000));
  }
  const hospitals = currentUser().hospitals || [];
  const hospital = select([['', '全部医院'], ...hospitals.map((x) => [x.id, x.name])], { class: 'input', value: filters.hospital_id, attrs: { 'aria-label': '医院' } });
  const since = h('input', { type: 'date', class: 'input', value: filters.since, attrs: { 'aria-label': '开始日期' } });
  const until = h('input', { type: 'date', class: 'input', value: filters.until, attrs: { 'aria-label': '结束日期' } });
  const csv = h('a', { class: 'btn btn-ghost btn-sm', text: '导出 CSV', id: 'export-csv', attrs: { download: '' } });
  const xlsx = h('a', { class: 'btn btn-ghost btn-sm', text: '导出 Excel', id: 'export-xlsx', attrs: { download: '' } });
  const body = h('div', { id: 'dashboard-body', class: 'dashboard-body' }, empty('正在计算…'));
  const apply = () => {
    Object.assign(filters, { hospital_id: hospital.value, since: since.value, until: until.value });
    setExportLinks(csv, xlsx);
    load(body);
  };
  replace(container,
    h('section', { class: 'panel' },
      h('form', { class: 'toolbar', on: { submit: (ev) => { ev.preventDefault(); apply(); } } },
        hospitals.length > 1 ? hospital : null,
        h('label', { class: 'inline-label' }, h('span', { text: '从' }), since),
        h('label', { class: 'inline-label' }, h('span', { text: '到' }), until),
        h('button', { type: 'submit', class: 'btn btn-primary btn-sm', text: '查询' }),
        h('span', { class: 'spacer' }), csv, xlsx)),
    body);
  setExportLinks(csv, xlsx);
  load(body);
}

export function leave() {
  destroyCharts();
  root = null;
}

function params() {
  return { hospital_id: filters.hospital_id, since: filters.since, until: filters.until };
}

function setExportLinks(csv, xlsx) {
  csv.href = `${BASE}/dashboard/export.csv${query(params())}`;
  xlsx.href = `${BASE}/dashboard/export.xlsx${query(params())}`;
}

function destroyCharts() {
  charts.forEach((chart) => chart.destroy());
  charts = [];
}

async function load(body) {
  let data;
  try {
    data = await api.get('/dashboard', params());
  } catch (err) {
    replace(body, empty(err.message));
    return;
  }
  if (!root) return;
  destroyCharts();
  draw(body, data);
}

/** Hours as people read them: minutes under an hour, else hours with one decimal. */
function duration(hours) {
  if (hours === null || hours === undefined) return '—';
  return hours < 1 ? `${Math.round(hours * 60)} 分钟` : `${Number(hours).toFixed(1)} 小时`;
}

function kpi(label, value, hint) {
  return h('div', { class: 'kpi' }, h('span', { class: 'kpi-label', text: label }), h('strong', { class: 'kpi-value', text: value }),
    hint ? h('span', { class: 'kpi-hint', text: hint }) : null);
}

function chartCard(titleText, id, wide = false) {
  const canvas = h('canvas', { id, attrs: { role: 'img', 'aria-label': titleText } });
  return { card: h('section', { class: `chart-card${wide ? ' is-wide' : ''}` }, h('h2', { class: 'chart-title', text: titleText }), h('div', { class: 'chart-box' }, canvas)), canvas };
}

function labelled(map, labels) {
  const keys = Object.keys(map || {});
  return { keys, labels: keys.map((k) => (labels && labels[k]) || STATE_LABELS[k] || k), values: keys.map((k) => map[k]) };
}

function draw(body, d) {
  const labels = d.labels || {};
  const ageing = d.ageing || {};
  replace(body,
    h('div', { class: 'kpis' },
      kpi('工单总数', fmtNumber(d.tickets_total, 0), `维修工单 ${fmtNumber(d.repair_tickets, 0)}`),
      kpi('机器人解决率', fmtPercent(d.robot_resolution_rate), `${fmtNumber(d.robot_resolved, 0)} 单由机器人解决`),
      kpi('客户自修率', fmtPercent(d.customer_repair_rate), '未派工程师即解决'),
      kpi('平均修复时间 MTTR', duration(d.mttr_hours), d.repaired_to_done ? `${d.repaired_to_done} 单已修复` : null),
      kpi('平均故障间隔 MTBF', d.mtbf_days === null || d.mtbf_days === undefined ? '—' : `${fmtNumber(d.mtbf_days)} 天`, d.devices ? `${d.devices} 台设备` : null),
      kpi('未结工单', fmtNumber(ageing.total, 0), ageing.by_age && ageing.by_age.gt3d ? `超过 3 天 ${ageing.by_age.gt3d} 单` : null)),
    h('div', { class: 'charts', id: 'charts' }));
  const grid = body.querySelector('#charts');
  const Chart = window.Chart;
  if (!Chart) { grid.appendChild(empty('图表组件未加载')); return; }
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = '#4b5563';
  const base = { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { position: 'bottom' } } };

  const add = (titleText, id, config, wide) => {
    const { card, canvas } = chartCard(titleText, id, wide);
    grid.appendChild(card);
    charts.push(new Chart(canvas, config));
  };

  const states = labelled(d.tickets_by_state, labels.state);
  add('工单状态分布', 'chart-state', {
    type: 'doughnut',
    data: { labels: states.labels, datasets: [{ data: states.values, backgroundColor: states.keys.map((k) => STATE_COLOURS[k] || '#9aa4b2') }] },
    options: { ...base, plugins: { legend: { position: 'right' } } },
  });

  const tiers = labelled(d.tickets_by_tier, labels.tier);
  add('故障级别', 'chart-tier', {
    type: 'doughnut',
    data: { labels: tiers.labels, datasets: [{ data: tiers.values, backgroundColor: ['#18a058', '#d03050', '#9aa4b2'] }] },
    options: { ...base, plugins: { legend: { position: 'right' } } },
  });

  const perHospital = d.tickets_by_hospital || [];
  add('各医院工单', 'chart-hospital', {
    type: 'bar',
    data: {
      labels: perHospital.map((x) => x.name),
      datasets: [{ label: '工单', data: perHospital.map((x) => x.tickets), backgroundColor: PALETTE[0] },
        { label: '未结', data: perHospital.map((x) => x.open), backgroundColor: PALETTE[2] }],
    },
    options: { ...base, indexAxis: 'y', scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
  });

  const failure = (rows, titleText, id) => add(titleText, id, {
    type: 'bar',
    data: {
      labels: (rows || []).map((r) => r.label),
      datasets: [
        { label: '故障率（次/台·年）', data: (rows || []).map((r) => r.failure_rate), backgroundColor: PALETTE[3], yAxisID: 'rate' },
        { label: '维修工单', data: (rows || []).map((r) => r.repair_tickets), backgroundColor: '#b8c7dd', yAxisID: 'count' },
      ],
    },
    options: {
      ...base,
      scales: {
        rate: { position: 'left', beginAtZero: true, title: { display: true, text: '故障率' } },
        count: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false }, ticks: { precision: 0 } },
      },
    },
  });
  failure(d.failure_by_type, '故障率 · 按设备类型', 'chart-failure-type');
  failure(d.failure_by_model, '故障率 · 按型号', 'chart-failure-model');
  failure(d.failure_by_age, '故障率 · 按设备年龄', 'chart-failure-age');

  const resolution = [
    ['机器人解决', d.robot_resolution_rate], ['客户自修（含机器人）', d.customer_repair_rate],
  ];
  add('解决方式', 'chart-resolution', {
    type: 'bar',
    data: { labels: resolution.map((r) => r[0]), datasets: [{ label: '占维修工单比例', data: resolution.map((r) => (r[1] === null || r[1] === undefined ? 0 : r[1] * 100)), backgroundColor: [PALETTE[5], PALETTE[1]] }] },
    options: { ...base, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, max: 100, ticks: { callback: (v) => `${v}%` } } } },
  });

  const ageLabels = ageing.age_labels || {};
  const ageKeys = Object.keys(ageLabels);
  const matrix = ageing.by_state_and_age || {};
  add('未结工单账龄', 'chart-ageing', {
    type: 'bar',
    data: {
      labels: ageKeys.map((k) => ageLabels[k]),
      datasets: Object.keys(matrix).map((state) => ({
        label: (labels.state && labels.state[state]) || STATE_LABELS[state] || state,
        data: ageKeys.map((k) => matrix[state][k] || 0),
        backgroundColor: STATE_COLOURS[state] || '#9aa4b2',
      })),
    },
    options: { ...base, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
  }, true);
}

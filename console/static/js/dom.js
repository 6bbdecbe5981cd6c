// Building the page from data: every piece of text goes in as a text node (textContent), never as HTML.

/**
 * h('tr', {class: 'row', on: {click: fn}, attrs: {'aria-label': '…'}, dataset: {number: 'R…'}}, child, 'text', …)
 * Known props: class, text, on, attrs, dataset, and DOM properties (value, type, disabled, hidden, href, src, …).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = String(value);
      else if (key === 'on') for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
      else if (key === 'attrs') for (const [name, v] of Object.entries(value)) { if (v !== null && v !== undefined && v !== false) el.setAttribute(name, v === true ? '' : String(v)); }
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else el[key] = value;
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const TIMEZONE = document.body.dataset.timezone || undefined;
const dateTime = new Intl.DateTimeFormat('zh-CN', {
  timeZone: TIMEZONE, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false,
});
const shortTime = new Intl.DateTimeFormat('zh-CN', {
  timeZone: TIMEZONE, month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false,
});

/** "2026-11-23 14:05" in the hospital's time zone ('' for no value). */
export function fmtTime(iso, short = false) {
  if (!iso) return '';
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  const parts = Object.fromEntries((short ? shortTime : dateTime).formatToParts(when).map((p) => [p.type, p.value]));
  const day = short ? `${parts.month}-${parts.day}` : `${parts.year}-${parts.month}-${parts.day}`;
  return `${day} ${parts.hour === '24' ? '00' : parts.hour}:${parts.minute}`;
}

/** "3 分钟前" / "2 小时前" / "5 天前". */
export function fmtAgo(iso) {
  if (!iso) return '';
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 60) return '刚刚';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} 分钟前`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} 小时前`;
  return `${Math.floor(seconds / 86400)} 天前`;
}

export function fmtPercent(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return '—';
  return `${(Number(value) * 100).toFixed(digits)}%`;
}

export function fmtNumber(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return '—';
  return Number(value).toFixed(digits).replace(/\.0+$/, '');
}

/** A label–value list (<dl>) from [[label, value], …]; values may be nodes. Empty values are left out. */
export function facts(rows, className = 'facts') {
  return h('dl', { class: className }, rows
    .filter(([, value]) => value !== null && value !== undefined && value !== '')
    .map(([label, value]) => h('div', { class: 'fact' }, h('dt', { text: label }), h('dd', null, value))));
}

export function empty(text) {
  return h('div', { class: 'empty' }, text);
}

/** A <select> from [[value, label], …]. */
export function select(options, props = {}) {
  const el = h('select', props);
  for (const [value, label] of options) el.appendChild(h('option', { value: String(value), text: label }));
  if (props.value !== undefined) el.value = String(props.value);
  return el;
}

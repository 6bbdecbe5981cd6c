// The live queue: one WebSocket to /console/ws (authenticated by the session cookie). After a drop it reconnects with
// ?after=<last event id>, so the server replays what was missed; unread tickets per state, a beep and a desktop
// notification for new work.

const LAST_ID_KEY = 'medwx.console.lastEventId';
const UNREAD_KEY = 'medwx.console.unread';
const SOUND_KEY = 'medwx.console.sound';
const STALE_AFTER_MS = 60000; // the server pings every 25 s: a minute of silence means the connection is dead

export const STATE_LABELS = {
  new: '新工单', answered_by_robot: '机器人已答复', with_agent: '客服处理中', remote: '远程处理中',
  with_engineer: '工程师处理中', done: '已完成待确认', closed: '已关闭', reopened: '已重新打开',
};
const EVENT_LABELS = {
  'ticket.opened': '新工单', 'ticket.handed_off': '转人工', 'ticket.assigned': '已派工',
  'ticket.state_changed': '状态变更', 'ticket.message': '新消息', 'device.alert': '设备预警',
};
const URGENT_ALERTS = ['high', 'critical'];

const listeners = new Set();
const statusListeners = new Set();
let socket = null;
let wanted = false;
let retries = 0;
let retryTimer = null;
let staleTimer = null;
let lastId = sessionStorage.getItem(LAST_ID_KEY) || '';
let viewing = null; // the ticket number open on screen: its events are read as they come
let onSessionLost = () => {};

// -- unread -----------------------------------------------------------------------------------------------------
const unread = new Map(Object.entries(JSON.parse(sessionStorage.getItem(UNREAD_KEY) || '{}')));
const knownStates = new Map();

function saveUnread() {
  sessionStorage.setItem(UNREAD_KEY, JSON.stringify(Object.fromEntries(unread)));
}

/** The queue tells us the states it saw, so a message event can be counted under its ticket's state. */
export function noteStates(items) {
  for (const item of items) {
    knownStates.set(item.number, item.state);
    if (unread.has(item.number) && unread.get(item.number) !== item.state) unread.set(item.number, item.state);
  }
  saveUnread();
}

export function isUnread(number) { return unread.has(number); }
export function markSeen(number) {
  if (unread.delete(number)) { saveUnread(); notifyStatus(); }
}
export function unreadByState() {
  const counts = {};
  for (const state of unread.values()) counts[state] = (counts[state] || 0) + 1;
  return counts;
}
export function unreadTotal() { return unread.size; }
export function setViewing(number) {
  viewing = number;
  if (number) markSeen(number);
}

// -- sound and desktop notifications ----------------------------------------------------------------------------
let audio = null;
let lastBeep = 0;
export function soundOn() { return localStorage.getItem(SOUND_KEY) !== 'off'; }
export function setSound(on) { localStorage.setItem(SOUND_KEY, on ? 'on' : 'off'); }

/** Browsers start audio only after a user gesture: the app calls this from its first click. */
export function unlockAudio() {
  if (!audio && (window.AudioContext || window.webkitAudioContext)) {
    audio = new (window.AudioContext || window.webkitAudioContext)();
  }
  if (audio && audio.state === 'suspended') audio.resume().catch(() => {});
}

export function beep() {
  const now = Date.now();
  if (!soundOn() || !audio || audio.state !== 'running' || now - lastBeep < 1000) return; // replays beep once
  lastBeep = now;
  const start = audio.currentTime;
  for (const [offset, freq] of [[0, 880], [0.16, 1175]]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.14);
    osc.connect(gain).connect(audio.destination);
    osc.start(start + offset);
    osc.stop(start + offset + 0.15);
  }
}

export function notificationState() {
  return 'Notification' in window ? Notification.permission : 'unsupported';
}

export async function askNotificationPermission() {
  if (!('Notification' in window)) return 'unsupported';
  if (Notification.permission === 'default') return Notification.requestPermission();
  return Notification.permission;
}

function desktopNotice(frame) {
  if (notificationState() !== 'granted' || (document.visibilityState === 'visible' && document.hasFocus())) return;
  const data = frame.data || {};
  const alert = frame.event === 'device.alert';
  const title = `${EVENT_LABELS[frame.event] || '工单更新'} ${alert ? '' : data.number || ''}`.trim();
  const body = alert ? (data.text || '点击查看设备预警') : '点击查看工单';
  const target = alert ? '#/alerts' : (data.number ? `#/tickets/${encodeURIComponent(data.number)}` : '');
  try {
    const notice = new Notification(title, { body, tag: alert ? `alert-${data.alert_id}` : `ticket-${data.number}`, lang: 'zh-CN' });
    notice.onclick = () => { window.focus(); if (target) location.hash = target; notice.close(); };
  } catch (err) { /* some platforms allow notifications only from a service worker: the beep remains */ }
}

function wantsAttention(frame) {
  if (frame.event === 'ticket.opened' || frame.event === 'ticket.handed_off') return true;
  if (frame.event === 'device.alert') return URGENT_ALERTS.includes((frame.data || {}).severity);
  if (frame.event === 'ticket.message') return (frame.data || {}).author_role === 'reporter';
  return frame.event === 'ticket.state_changed' && ['reopened', 'done'].includes((frame.data || {}).state);
}

// -- the connection -------------------------------------------------------------------------------------------------
/** fn(frame) for every live event (tickets, device alerts), live or replayed. */
export function onLiveEvent(fn) { listeners.add(fn); return () => listeners.delete(fn); }
/** fn({connected, text}) when the connection or the unread counts change. */
export function onLiveStatus(fn) { statusListeners.add(fn); fn(status()); return () => statusListeners.delete(fn); }

let connected = false;
function status() {
  return { connected, text: connected ? '实时连接中' : (wanted ? '连接中断，正在重连…' : '未连接'), unread: unreadTotal() };
}
function notifyStatus() { const s = status(); statusListeners.forEach((fn) => fn(s)); }

function newer(id, than) {
  // Redis stream ids: "<ms>-<seq>"
  if (!than) return true;
  const [a, b] = id.split('-').map(Number);
  const [c, d] = than.split('-').map(Number);
  return a > c || (a === c && b > d);
}

function remember(id) {
  lastId = id;
  sessionStorage.setItem(LAST_ID_KEY, id);
}

function handle(frame) {
  if (frame.type === 'hello') {
    if (!lastId && frame.last_id) remember(frame.last_id);
    return;
  }
  if (frame.type !== 'event' || !frame.id) return;
  if (!newer(frame.id, lastId)) return; // already handled (a replay overlapping what we saw)
  remember(frame.id);
  const data = frame.data || {};
  if (data.state) knownStates.set(data.number, data.state);
  if (data.number && data.number !== viewing) {
    const state = data.state || knownStates.get(data.number) || unread.get(data.number) || 'new';
    unread.set(data.number, state);
    saveUnread();
  }
  if (wantsAttention(frame)) { beep(); desktopNotice(frame); }
  // A copy: a listener that re-renders may subscribe anew, and the new one must not get this frame as well.
  [...listeners].forEach((fn) => { try { fn(frame); } catch (err) { console.warn('live listener failed', err); } });
  notifyStatus();
}

function touch() {
  clearTimeout(staleTimer);
  staleTimer = setTimeout(() => { if (socket) socket.close(4000, 'stale'); }, STALE_AFTER_MS);
}

function connect() {
  clearTimeout(retryTimer);
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const after = lastId ? `?after=${encodeURIComponent(lastId)}` : '';
  const ws = new WebSocket(`${scheme}://${location.host}/console/ws${after}`);
  socket = ws;
  ws.addEventListener('open', () => { connected = true; retries = 0; touch(); notifyStatus(); });
  ws.addEventListener('message', (msg) => {
    touch();
    let frame;
    try { frame = JSON.parse(msg.data); } catch (err) { return; }
    if (frame.type === 'ping') return; // only keeps the connection (and touch()) alive
    handle(frame);
  });
  ws.addEventListener('close', (ev) => {
    if (socket !== ws) return;
    socket = null;
    connected = false;
    clearTimeout(staleTimer);
    notifyStatus();
    if (!wanted) return;
    if (ev.code === 4401) { wanted = false; onSessionLost(); notifyStatus(); return; }
    // 1 s, 2 s, 4 s … up to 15 s, with jitter so that a restarted server is not hit by every console at once
    const delay = Math.min(15000, 1000 * 2 ** retries) * (0.75 + Math.random() * 0.5);
    retries += 1;
    retryTimer = setTimeout(connect, delay);
  });
}

export function startLive(sessionLost) {
  onSessionLost = sessionLost || onSessionLost;
  if (wanted) return;
  wanted = true;
  connect();
}

export function stopLive() {
  wanted = false;
  clearTimeout(retryTimer);
  clearTimeout(staleTimer);
  if (socket) socket.close(1000, 'logout');
  socket = null;
  connected = false;
  notifyStatus();
}

/** Forget this session's position and unread marks (logout: the next person starts fresh). */
export function forget() {
  lastId = '';
  unread.clear();
  sessionStorage.removeItem(LAST_ID_KEY);
  sessionStorage.removeItem(UNREAD_KEY);
}

window.addEventListener('online', () => { if (wanted && !socket) { retries = 0; connect(); } });

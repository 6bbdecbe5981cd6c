// The console's entry: who is signed in (login form or the app), the hash router, the top bar.

import { api, currentUser, isAdmin, onLoggedOut, setSession } from './api.js';
import { replace } from './dom.js';
import {
  askNotificationPermission, forget, notificationState, onLiveStatus, setSound, soundOn, startLive, stopLive,
  unlockAudio,
} from './live.js';
import { flash } from './ui.js';
import * as queue from './queue.js';
import * as ticket from './ticket.js';
import * as dashboard from './dashboard.js';
import * as admin from './admin.js';
import * as health from './health.js';

const ROLE_LABELS = { admin: '管理员', agent: '客服', engineer: '工程师', doctor: '医生' };
const $ = (id) => document.getElementById(id);

// -- routes ---------------------------------------------------------------------------------------------------------
const routes = [
  [/^#\/queue$/, () => queue],
  [/^#\/tickets\/([^/]+)$/, () => ticket],
  [/^#\/dashboard$/, () => dashboard],
  [/^#\/alerts$/, () => health],
  [/^#\/devices\/(\d+)\/health$/, () => health],
  [/^#\/admin\/([a-z]+)$/, () => admin],
];
let current = null;

function route() {
  if (!currentUser()) return;
  const hash = location.hash || '#/queue';
  let view = null;
  let params = [];
  for (const [pattern, module] of routes) {
    const match = hash.match(pattern);
    if (match) { view = module(); params = match.slice(1).map(decodeURIComponent); break; }
  }
  const engineer = currentUser().role === 'engineer';
  if (!view || (view === admin && !isAdmin()) || (view === dashboard && engineer)) { location.replace('#/queue'); return; }
  if (current && current.leave) current.leave();
  current = view;
  const main = $('view');
  replace(main);
  main.className = `view view-${hash.split('/')[1] || 'queue'}`;
  for (const link of document.querySelectorAll('[data-nav]')) {
    const active = hash.startsWith(`#/${link.dataset.nav}`) || (link.dataset.nav === 'queue' && hash.startsWith('#/tickets/'));
    link.classList.toggle('is-active', active);
    if (active) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  $('view-title').textContent = view.title(...params);
  view.render(main, ...params);
}

window.addEventListener('hashchange', route);

// -- signed in or not -----------------------------------------------------------------------------------------------
function showLogin(message) {
  stopLive();
  if (current && current.leave) current.leave();
  current = null;
  $('booting').hidden = true;
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  const box = $('login-error');
  box.hidden = !message;
  box.textContent = message || '';
  $('login-password').value = '';
  $('login-username').focus();
}

function showApp() {
  const user = currentUser();
  $('booting').hidden = true;
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('me-name').textContent = user.name || user.username;
  $('me-role').textContent = ROLE_LABELS[user.role] || user.role;
  $('nav-admin').hidden = user.role !== 'admin';
  document.querySelector('[data-nav="dashboard"]').hidden = user.role === 'engineer'; // figures are for agents
  updateNotifyButton();
  startLive(() => api.get('/me').catch(() => {})); // 4401: the session ended; /me's 401 shows the login form
  route();
}

onLoggedOut(() => showLogin('登录已过期，请重新登录'));

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  unlockAudio();
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  const box = $('login-error');
  if (!username || !password) {
    box.textContent = '请输入用户名和密码';
    box.hidden = false;
    return;
  }
  const button = $('login-submit');
  button.disabled = true;
  box.hidden = true;
  try {
    const body = await api.post('/login', { username, password });
    forget(); // another person may have used this tab: start from their own position
    setSession(body);
    if (!location.hash || location.hash === '#/') location.replace('#/queue');
    showApp();
  } catch (err) {
    box.textContent = err.message;
    box.hidden = false;
    $('login-password').select();
  } finally {
    button.disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  try { await api.post('/logout'); } catch (err) { /* the session may be gone already */ }
  setSession(null);
  forget();
  showLogin();
});

// -- top bar: sound and notifications -------------------------------------------------------------------------------
function updateSoundButton() {
  const on = soundOn();
  $('sound-toggle').textContent = on ? '声音提醒：开' : '声音提醒：关';
  $('sound-toggle').setAttribute('aria-pressed', String(on));
}

function updateNotifyButton() {
  const state = notificationState();
  const button = $('notify-toggle');
  button.hidden = state === 'unsupported';
  button.disabled = state !== 'default';
  button.textContent = { granted: '桌面通知：已开启', denied: '桌面通知：已被浏览器禁止', default: '开启桌面通知' }[state] || '';
}

$('sound-toggle').addEventListener('click', () => { unlockAudio(); setSound(!soundOn()); updateSoundButton(); });
$('notify-toggle').addEventListener('click', async () => {
  const answer = await askNotificationPermission();
  updateNotifyButton();
  if (answer === 'granted') flash('已开启桌面通知：新工单会在桌面提醒');
});
// Audio may start only after a gesture: the first click anywhere unlocks the beep.
document.addEventListener('pointerdown', unlockAudio, { once: true });
document.addEventListener('keydown', unlockAudio, { once: true });

onLiveStatus((s) => {
  const box = $('live-status');
  box.classList.toggle('is-on', s.connected);
  box.classList.toggle('is-off', !s.connected);
  $('live-text').textContent = s.text;
  const badge = $('nav-unread');
  badge.hidden = !s.unread;
  badge.textContent = String(s.unread);
  document.title = s.unread ? `(${s.unread}) 设备服务工作台` : '设备服务工作台';
});

// -- start ----------------------------------------------------------------------------------------------------------
updateSoundButton();
api.get('/me').then((body) => { setSession(body); showApp(); }, (err) => {
  if (err.status === 401) showLogin();
  else { showLogin(); $('login-error').textContent = err.message; $('login-error').hidden = false; }
});

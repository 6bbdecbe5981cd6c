// The doctor's page: sign in, the practitioner's consultations, and the room (text chat over the room WebSocket;
// voice/video by WebRTC, the server relaying offer/answer/ICE on the same socket). Text goes in as textContent only.

import { api, ApiError, setSession } from './api.js';
import { h, replace, fmtTime } from './dom.js';

const $ = (id) => document.getElementById(id);
const STATUS = {
  requested: '等待医院确认', accepted: '已接受，等待进入诊室', declined: '已拒绝', cancelled: '已取消',
  active: '问诊中', ended: '已结束',
};
const SENDER = { patient: '患者', doctor: '我' };
let socket = null;
let current = null; // the consultation shown in the room
let peer = null;

function show(view) {
  $('booting').hidden = true;
  $('login-view').hidden = view !== 'login';
  $('app-view').hidden = view !== 'app';
}

async function boot() {
  try {
    setSession(await api.get('/me'));
    show('app');
    await loadList();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) show('login');
    else throw err;
  }
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').hidden = true;
  try {
    setSession(await api.post('/login', { username: $('login-username').value.trim(), password: $('login-password').value }));
    show('app');
    await loadList();
  } catch (err) {
    $('login-error').textContent = err.message;
    $('login-error').hidden = false;
  }
});

async function loadList() {
  let data;
  try {
    data = await api.get('/doctor/consultations');
  } catch (err) {
    replace($('consultations'), h('p', { class: 'alert alert-error', text: err.message }));
    return;
  }
  const p = data.practitioner;
  $('doctor-name').textContent = `${p.name} · ${p.department || ''}`;
  if (!data.consultations.length) {
    replace($('consultations'), h('p', { class: 'empty', text: '暂无问诊' }));
    return;
  }
  replace($('consultations'), h('ul', { class: 'plain-list' }, data.consultations.map((c) => h('li', {
    class: 'queue-row', dataset: { consultation: String(c.id) },
  },
  h('strong', { text: `${c.patient.name || c.patient.number}` }), ' ',
  h('span', { class: 'badge', text: STATUS[c.status] || c.status }), ' ',
  h('span', { class: 'muted', text: c.slot ? fmtTime(c.slot.start) : '' }), ' ',
  ['accepted', 'active'].includes(c.status)
    ? h('button', { type: 'button', class: 'btn btn-primary btn-sm', text: '进入诊室', on: { click: () => enter(c.id) } })
    : null))));
}

function addMessage(message) {
  if (document.querySelector(`[data-message="${message.id}"]`)) return;
  $('room-messages').appendChild(h('div', { class: `message message-${message.sender === 'doctor' ? 'agent' : 'engineer'}`, dataset: { message: String(message.id) } },
    h('div', { class: 'message-head', text: `${SENDER[message.sender] || message.sender} · ${fmtTime(message.created_at, true)}` }),
    h('div', { class: 'user-text', text: message.body })));
  $('room-messages').scrollTop = $('room-messages').scrollHeight;
}

async function enter(id) {
  const c = await api.get(`/doctor/consultations/${id}`);
  current = c;
  if (socket) socket.close();
  $('room').hidden = false;
  $('room-title').textContent = `诊室 · ${c.patient.name || c.patient.number}`;
  $('room-status').textContent = STATUS[c.status] || c.status;
  replace($('room-messages'));
  c.messages.forEach(addMessage);
  if (!c.room) return;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  socket = new WebSocket(`${scheme}://${location.host}/console/rooms/${id}/ws?token=${encodeURIComponent(c.room.token)}`);
  socket.addEventListener('message', (event) => onFrame(JSON.parse(event.data)));
  socket.addEventListener('close', () => { $('chat-send').disabled = true; });
  $('chat-send').disabled = false;
}

function onFrame(frame) {
  if (frame.type === 'hello') {
    frame.messages.forEach(addMessage);
    current.ice_servers = frame.ice_servers;
    $('room-status').textContent = '已进入诊室';
  } else if (frame.type === 'chat') addMessage(frame.message);
  else if (frame.type === 'presence') {
    // Its own line: a status frame (进行中) right after must not hide whether the patient is there.
    $('room-presence').textContent = frame.sides.includes('patient') ? '· 患者在线' : '· 患者未在线';
  } else if (frame.type === 'status') $('room-status').textContent = STATUS[frame.status] || frame.status;
  else if (frame.type === 'ended') {
    $('room-status').textContent = `已结束（${frame.duration_seconds || 0} 秒）`;
    stopCall();
    loadList();
  } else if (frame.type === 'error') $('room-status').textContent = frame.error.message;
  else if (frame.type === 'offer') answerCall(frame.data);
  else if (frame.type === 'answer' && peer) peer.setRemoteDescription(frame.data);
  else if (frame.type === 'ice' && peer && frame.data) peer.addIceCandidate(frame.data).catch(() => {});
}

$('chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const body = $('chat-input').value.trim();
  if (!body || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: 'chat', body }));
  $('chat-input').value = '';
});

$('end-room').addEventListener('click', () => {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: 'end' }));
});

$('refresh').addEventListener('click', loadList);

// -- voice and video: the browser's WebRTC; the server relays the signalling only ------------------------------------
function newPeer() {
  peer = new RTCPeerConnection({ iceServers: (current && current.ice_servers) || [] });
  peer.addEventListener('icecandidate', (e) => { if (e.candidate) socket.send(JSON.stringify({ type: 'ice', data: e.candidate })); });
  peer.addEventListener('track', (e) => { $('remote-video').srcObject = e.streams[0]; $('remote-video').hidden = false; });
  return peer;
}

async function localMedia() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  $('local-video').srcObject = stream;
  $('local-video').hidden = false;
  stream.getTracks().forEach((track) => peer.addTrack(track, stream));
}

$('call-video').addEventListener('click', async () => {
  if (!socket) return;
  try {
    newPeer();
    await localMedia();
    const offer = await peer.createOffer();
    await peer.setLocalDescription(offer);
    socket.send(JSON.stringify({ type: 'offer', data: peer.localDescription }));
  } catch (err) {
    $('room-status').textContent = `无法开始视频：${err.message}`;
  }
});

async function answerCall(offer) {
  try {
    newPeer();
    await peer.setRemoteDescription(offer);
    await localMedia();
    const answer = await peer.createAnswer();
    await peer.setLocalDescription(answer);
    socket.send(JSON.stringify({ type: 'answer', data: peer.localDescription }));
  } catch (err) {
    $('room-status').textContent = `无法接通视频：${err.message}`;
  }
}

function stopCall() {
  if (peer) { peer.close(); peer = null; }
  for (const id of ['local-video', 'remote-video']) {
    const video = $(id);
    if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
    video.srcObject = null;
    video.hidden = true;
  }
}

boot();

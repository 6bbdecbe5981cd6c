/* The repair report form: photos (camera or album, previews), voice clips (recorded or picked), one submission id
   per page load so a double tap or a retry after a network error never opens two tickets. ES5 on purpose: older
   WeChat webviews still run it. */
(function () {
  'use strict';

  var form = document.getElementById('report-form');
  if (!form) { return; }
  var cfg = JSON.parse(document.getElementById('page-config').textContent);
  var requestId = newRequestId();
  var photos = [];  // {blob, name, url}
  var voices = [];  // {blob, name, url, seconds}

  var grid = document.getElementById('photo-grid');
  var addTiles = [document.getElementById('photo-camera'), document.getElementById('photo-album')];
  var voiceList = document.getElementById('voice-list');
  var recordBtn = document.getElementById('record-btn');
  var recordLabel = document.getElementById('record-label');
  var voicePick = document.getElementById('voice-pick');
  var errorBox = document.getElementById('form-error');
  var submitBtn = document.getElementById('submit-btn');

  function newRequestId() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') { return c.randomUUID(); }
    if (c && c.getRandomValues) {
      var b = new Uint8Array(16);
      c.getRandomValues(b);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      var h = '';
      for (var i = 0; i < 16; i++) { h += (b[i] + 0x100).toString(16).slice(1); }
      return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
    }
    return 'r-' + Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 12);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    errorBox.scrollIntoView({ behavior: 'smooth', block: 'center' });
  }

  function clearError() { errorBox.hidden = true; errorBox.textContent = ''; }

  // -- photos --------------------------------------------------------------------------------------------------------
  function renderPhotos() {
    var old = grid.querySelectorAll('.tile-preview');
    for (var i = 0; i < old.length; i++) { grid.removeChild(old[i]); }
    photos.forEach(function (p, index) {
      var tile = document.createElement('div');
      tile.className = 'tile tile-preview';
      var img = document.createElement('img');
      img.src = p.url;
      img.alt = '照片 ' + (index + 1);
      var remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'tile-remove';
      remove.setAttribute('aria-label', '删除照片 ' + (index + 1));
      remove.textContent = '×';
      remove.addEventListener('click', function () {
        URL.revokeObjectURL(p.url);
        photos.splice(photos.indexOf(p), 1);
        renderPhotos();
      });
      tile.appendChild(img);
      tile.appendChild(remove);
      grid.insertBefore(tile, addTiles[0]);
    });
    var full = photos.length >= cfg.maxPhotos;
    addTiles.forEach(function (t) { t.hidden = full; });
  }

  function addPhotos(input) {
    var files = Array.prototype.slice.call(input.files || []);
    input.value = '';  // picking the same photo again must fire "change" again
    clearError();
    var skipped = 0;
    files.forEach(function (f) {
      if (photos.length >= cfg.maxPhotos) { skipped += 1; return; }
      if (f.type && f.type.indexOf('image/') !== 0) { showError('“' + f.name + '”不是图片'); return; }
      photos.push({ blob: f, name: f.name || 'photo.jpg', url: URL.createObjectURL(f) });
    });
    if (skipped) { showError('最多上传 ' + cfg.maxPhotos + ' 张照片，多选的 ' + skipped + ' 张未添加'); }
    renderPhotos();
  }

  document.getElementById('photo-input').addEventListener('change', function (e) { addPhotos(e.target); });
  document.getElementById('album-input').addEventListener('change', function (e) { addPhotos(e.target); });

  // Phone photos are often 5–10 MB: send at most 1920 px, which is plenty to read an error code on a screen.
  function shrink(photo) {
    return new Promise(function (resolve) {
      if (photo.blob.size < 1500000 || !document.createElement('canvas').toBlob) { resolve(photo); return; }
      var img = new Image();
      img.onload = function () {
        var scale = Math.min(1, 1920 / Math.max(img.naturalWidth, img.naturalHeight));
        var canvas = document.createElement('canvas');
        canvas.width = Math.round(img.naturalWidth * scale);
        canvas.height = Math.round(img.naturalHeight * scale);
        canvas.getContext('2d').drawImage(img, 0, 0, canvas.width, canvas.height);
        canvas.toBlob(function (blob) {
          if (blob && blob.size < photo.blob.size) {
            resolve({ blob: blob, name: photo.name.replace(/\.[^.]*$/, '') + '.jpg', url: photo.url });
          } else {
            resolve(photo);
          }
        }, 'image/jpeg', 0.85);
      };
      img.onerror = function () { resolve(photo); };
      img.src = photo.url;
    });
  }

  // -- voice ---------------------------------------------------------------------------------------------------------
  function formatSeconds(s) {
    s = Math.max(0, Math.round(s));
    return Math.floor(s / 60) + ':' + ('0' + (s % 60)).slice(-2);
  }

  function renderVoices() {
    voiceList.innerHTML = '';
    voices.forEach(function (v, index) {
      var li = document.createElement('li');
      li.className = 'voice-item';
      var name = document.createElement('span');
      name.className = 'voice-name';
      name.textContent = '语音 ' + (index + 1) + (v.seconds ? '（' + formatSeconds(v.seconds) + '）' : '');
      var audio = document.createElement('audio');
      audio.controls = true;
      audio.src = v.url;
      var remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'voice-remove';
      remove.textContent = '删除';
      remove.addEventListener('click', function () {
        URL.revokeObjectURL(v.url);
        voices.splice(voices.indexOf(v), 1);
        renderVoices();
      });
      li.appendChild(name);
      li.appendChild(remove);
      li.appendChild(audio);
      voiceList.appendChild(li);
    });
    var full = voices.length >= cfg.maxVoices;
    voicePick.hidden = full;
    if (canRecord) { recordBtn.hidden = full && !recorder; }
  }

  function addVoice(blob, name, seconds) {
    voices.push({ blob: blob, name: name, url: URL.createObjectURL(blob), seconds: seconds });
    renderVoices();
  }

  // A picked file may be any length: read its duration before accepting it.
  function duration(blob) {
    return new Promise(function (resolve) {
      var probe = document.createElement('audio');
      var url = URL.createObjectURL(blob);
      var done = function (value) { URL.revokeObjectURL(url); resolve(value); };
      probe.preload = 'metadata';
      probe.onloadedmetadata = function () { done(probe.duration); };
      probe.onerror = function () { done(NaN); };
      probe.src = url;
      setTimeout(function () { done(NaN); }, 4000);
    });
  }

  document.getElementById('voice-input').addEventListener('change', function (e) {
    var f = e.target.files && e.target.files[0];
    e.target.value = '';
    clearError();
    if (!f || voices.length >= cfg.maxVoices) { return; }
    duration(f).then(function (seconds) {
      if (seconds > cfg.maxVoiceSeconds + 0.5 && isFinite(seconds)) {
        showError('语音最长 ' + cfg.maxVoiceSeconds + ' 秒，请剪短后再选');
        return;
      }
      addVoice(f, f.name || 'voice', isFinite(seconds) ? seconds : 0);
    });
  });

  var canRecord = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
  var recorder = null;
  var recordTimer = null;

  function recordingType() {
    var types = ['audio/webm;codecs=opus', 'audio/webm', 'audio/mp4', 'audio/aac'];
    for (var i = 0; i < types.length; i++) {
      if (MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(types[i])) { return types[i]; }
    }
    return '';
  }

  function stopRecording() {
    if (recorder && recorder.state !== 'inactive') { recorder.stop(); }
  }

  function startRecording() {
    clearError();
    navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
      var type = recordingType();
      var chunks = [];
      var started = Date.now();
      recorder = type ? new MediaRecorder(stream, { mimeType: type }) : new MediaRecorder(stream);
      recorder.ondataavailable = function (e) { if (e.data && e.data.size) { chunks.push(e.data); } };
      recorder.onstop = function () {
        var mime = (recorder.mimeType || type || 'audio/webm').split(';')[0];
        stream.getTracks().forEach(function (t) { t.stop(); });
        clearInterval(recordTimer);
        recorder = null;
        recordBtn.classList.remove('is-recording');
        recordLabel.textContent = '开始录音';
        if (chunks.length) {
          addVoice(new Blob(chunks, { type: mime }), 'voice.' + (mime.indexOf('mp4') >= 0 ? 'm4a' : 'webm'),
                   (Date.now() - started) / 1000);
        } else {
          renderVoices();
        }
      };
      recorder.start();
      recordBtn.classList.add('is-recording');
      var tick = function () {
        var elapsed = (Date.now() - started) / 1000;
        recordLabel.textContent = '结束录音 ' + formatSeconds(elapsed);
        if (elapsed >= cfg.maxVoiceSeconds) { stopRecording(); }
      };
      tick();
      recordTimer = setInterval(tick, 250);
    }).catch(function () {
      showError('无法使用麦克风，请允许录音权限，或改为选择音频文件');
    });
  }

  if (canRecord) {
    recordBtn.hidden = false;
    recordBtn.addEventListener('click', function () { if (recorder) { stopRecording(); } else { startRecording(); } });
  }

  // -- submit --------------------------------------------------------------------------------------------------------
  function field(name) {
    var el = form.elements[name];
    return el ? String(el.value || '').trim() : '';
  }

  function checked(name) {
    var boxes = form.querySelectorAll('input[name="' + name + '"]:checked');
    return Array.prototype.map.call(boxes, function (b) { return b.value; });
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    clearError();
    if (recorder) { showError('请先结束录音'); return; }
    var description = field('description');
    if (!description && !photos.length && !voices.length) {
      showError('请描述故障，或附上照片、语音');
      return;
    }
    if (cfg.anonymous && !/^1[3-9]\d{9}$/.test(field('phone').replace(/\s+/g, ''))) {
      showError('请填写正确的手机号（11 位）');
      form.elements.phone.focus();
      return;
    }
    submitBtn.disabled = true;
    submitBtn.textContent = '正在提交…';
    Promise.all(photos.map(shrink)).then(function (ready) {
      var data = new FormData();
      data.append('t', cfg.token);
      data.append('client_request_id', requestId);
      data.append('description', description);
      checked('member_ids').forEach(function (id) { data.append('member_ids', id); });
      ready.forEach(function (p) { data.append('photos', p.blob, p.name); });
      voices.forEach(function (v) { data.append('voices', v.blob, v.name); });
      if (cfg.anonymous) {
        data.append('name', field('name'));
        data.append('phone', field('phone').replace(/\s+/g, ''));
      }
      return fetch(cfg.submitUrl, { method: 'POST', body: data, credentials: 'same-origin',
                                    headers: { 'Accept': 'application/json' } });
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.ok && body.number) { succeeded(body); return; }
        var message = body.error && body.error.message;
        fail(message || '提交失败（' + response.status + '），请稍后重试');
      });
    }).catch(function () {
      fail('网络异常，请检查网络后重新提交');
    });
  });

  function fail(message) {
    submitBtn.disabled = false;
    submitBtn.textContent = '提交报修';
    showError(message);
  }

  function succeeded(body) {
    form.hidden = true;
    document.getElementById('success-text').textContent = '报修成功，工单号 ' + body.number;
    var link = document.getElementById('ticket-link');
    link.href = body.url;
    document.getElementById('success').hidden = false;
    window.scrollTo(0, 0);
  }

  renderPhotos();
  renderVoices();
}());

/* The engineer's job page: accept, add a note with photos, mark the job done. Messages via textContent only. */
(function () {
  'use strict';

  var box = document.getElementById('job-actions');
  if (!box) { return; }
  var base = box.getAttribute('data-base');
  var errorBox = document.getElementById('job-error');
  var form = document.getElementById('note-form');
  var text = document.getElementById('note-text');
  var photos = document.getElementById('note-photos');
  var buttons = Array.prototype.slice.call(box.querySelectorAll('button'));

  function busy(on) { buttons.forEach(function (b) { b.disabled = on; }); }

  function fail(message) {
    busy(false);
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function send(path, body) {
    errorBox.hidden = true;
    busy(true);
    fetch(base + path, { method: 'POST', credentials: 'same-origin', headers: { 'Accept': 'application/json' },
                         body: body })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (response.ok) { window.location.reload(); return; }
          fail((answer.error && answer.error.message) || '操作失败（' + response.status + '），请稍后重试');
        });
      }, function () { fail('网络异常，请稍后重试'); });
  }

  function formWith(field) {
    var data = new FormData();
    data.append(field, text ? text.value : '');
    var max = parseInt(photos.getAttribute('data-max'), 10) || 6;
    if (photos.files.length > max) { fail('最多上传 ' + max + ' 张照片'); return null; }
    Array.prototype.forEach.call(photos.files, function (f) { data.append('photos', f, f.name); });
    return data;
  }

  var accept = document.getElementById('accept-btn');
  if (accept) { accept.addEventListener('click', function () { send('/accept', new FormData()); }); }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (!document.getElementById('note-btn')) { return; }
    if (!text.value.trim() && !photos.files.length) { fail('请填写记录内容或选择照片'); return; }
    var data = formWith('text');
    if (data) { send('/notes', data); }
  });

  var done = document.getElementById('done-btn');
  if (done) {
    done.addEventListener('click', function () {
      if (!window.confirm('确认维修已完成？报修人和客服将收到通知。')) { return; }
      var data = formWith('note');
      if (data) { send('/done', data); }
    });
  }
}());

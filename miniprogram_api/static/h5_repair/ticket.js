/* The reporter's answer on the ticket page: "确认修好" closes, "还没修好" (with an optional note) reopens. */
(function () {
  'use strict';

  var box = document.getElementById('reporter-actions');
  if (!box) { return; }
  var errorBox = document.getElementById('action-error');
  var confirmBtn = document.getElementById('confirm-btn');
  var reopenBtn = document.getElementById('reopen-btn');
  var reopenBox = document.getElementById('reopen-box');
  var buttons = [confirmBtn, reopenBtn].filter(Boolean);

  function busy(on) { buttons.forEach(function (b) { b.disabled = on; }); }

  function fail(message) {
    busy(false);
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function send(url, payload) {
    errorBox.hidden = true;
    busy(true);
    fetch(url, { method: 'POST', credentials: 'same-origin',
                 headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
                 body: JSON.stringify(payload || {}) })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.ok) { window.location.reload(); return; }
          fail((body.error && body.error.message) || '操作失败（' + response.status + '），请稍后重试');
        });
      }, function () { fail('网络异常，请稍后重试'); });
  }

  if (confirmBtn) {
    confirmBtn.addEventListener('click', function () { send(box.getAttribute('data-confirm-url')); });
  }
  reopenBtn.addEventListener('click', function () {
    // First tap asks what is still wrong; the second sends it.
    if (reopenBox.hidden) {
      reopenBox.hidden = false;
      reopenBtn.textContent = '提交：还没修好';
      document.getElementById('reopen-note').focus();
      return;
    }
    send(box.getAttribute('data-reopen-url'), { note: document.getElementById('reopen-note').value });
  });
}());

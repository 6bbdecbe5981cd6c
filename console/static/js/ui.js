// Small pieces every screen uses: the flash line, confirmation, button busy state, the photo lightbox.

import { h } from './dom.js';

let flashTimer = null;

/** A short message under the top bar ('ok' | 'error' | 'info'). */
export function flash(text, kind = 'ok') {
  const box = document.getElementById('flash');
  box.textContent = text;
  box.className = `flash flash-${kind}`;
  box.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { box.hidden = true; }, kind === 'error' ? 8000 : 4000);
}

/** Runs fn with the button disabled; an API error is shown (in the given box, else as a flash) and returned. */
export async function busy(button, fn, errorBox) {
  if (button) button.disabled = true;
  if (errorBox) errorBox.hidden = true;
  try {
    return await fn();
  } catch (err) {
    const message = err && err.message ? err.message : '操作失败，请稍后重试';
    if (errorBox) { errorBox.textContent = message; errorBox.hidden = false; } else flash(message, 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function errorBox() {
  return h('div', { class: 'alert alert-error', attrs: { role: 'alert' }, hidden: true });
}

export function badge(text, kind = '') {
  return h('span', { class: `badge${kind ? ` badge-${kind}` : ''}`, text });
}

// -- lightbox ---------------------------------------------------------------------------------------------------------
const box = document.getElementById('lightbox');
const img = document.getElementById('lightbox-img');
const caption = document.getElementById('lightbox-caption');
let photos = [];
let index = 0;

function showPhoto() {
  const photo = photos[index];
  img.src = photo.url;
  img.alt = photo.caption;
  caption.textContent = photos.length > 1 ? `${photo.caption}（${index + 1} / ${photos.length}）` : photo.caption;
  document.getElementById('lightbox-prev').hidden = photos.length < 2;
  document.getElementById('lightbox-next').hidden = photos.length < 2;
}

/** Opens the lightbox on list[start]; list items are {url, caption}. */
export function openLightbox(list, start = 0) {
  photos = list;
  index = start;
  showPhoto();
  box.hidden = false;
  document.getElementById('lightbox-close').focus();
}

export function closeLightbox() {
  box.hidden = true;
  img.removeAttribute('src');
}

function step(delta) {
  index = (index + delta + photos.length) % photos.length;
  showPhoto();
}

document.getElementById('lightbox-close').addEventListener('click', closeLightbox);
document.getElementById('lightbox-prev').addEventListener('click', () => step(-1));
document.getElementById('lightbox-next').addEventListener('click', () => step(1));
box.addEventListener('click', (ev) => { if (ev.target === box) closeLightbox(); });
document.addEventListener('keydown', (ev) => {
  if (box.hidden) return;
  if (ev.key === 'Escape') closeLightbox();
  else if (ev.key === 'ArrowLeft') step(-1);
  else if (ev.key === 'ArrowRight') step(1);
});

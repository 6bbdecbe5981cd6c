// The console API (/console/api/v1): JSON in and out, the session cookie rides along, and every unsafe request
// carries the session's CSRF token in X-CSRF-Token (the token comes from /login or /me).

export const BASE = '/console/api/v1';

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || null; // e.g. {field: "username"}, or an import's per-row report
  }
}

const session = { user: null, csrf: '' };
const logoutHandlers = [];

export function currentUser() { return session.user; }
export function isAdmin() { return session.user && session.user.role === 'admin'; }
export function setSession(body) {
  session.user = body ? body.user : null;
  session.csrf = body ? body.csrf || '' : '';
}
/** Called when the server says the session is gone (401 login_required): the app shows the login form. */
export function onLoggedOut(fn) { logoutHandlers.push(fn); }

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === '' || value === false) continue;
    search.set(key, value === true ? '1' : String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

async function request(method, path, { body, form, params } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = session.csrf;
  let payload;
  if (form) payload = form; // multipart: the browser sets the boundary
  else if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  let response;
  try {
    response = await fetch(BASE + path + query(params), { method, headers, body: payload, credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError(0, 'network', '网络异常，请检查网络后重试');
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (err) { data = null; }
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const problem = new ApiError(response.status, error.code || 'http_' + response.status,
      error.message || `请求失败（${response.status}）`, error.details);
    if (response.status === 401 && path !== '/login') {
      setSession(null);
      logoutHandlers.forEach((fn) => fn(problem));
    }
    throw problem;
  }
  return data;
}

export const api = {
  get: (path, params) => request('GET', path, { params }),
  post: (path, body) => request('POST', path, { body: body || {} }),
  put: (path, body) => request('PUT', path, { body: body || {} }),
  del: (path) => request('DELETE', path),
  upload: (path, form) => request('POST', path, { form }),
};

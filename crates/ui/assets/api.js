// The HTTP API as the UI calls it: the user's token on every request, the API's own message on
// every error, and blocking-query watches (`?index=`) that keep a page live.

const TOKEN_KEY = 'lambdamesh.token';

export function token() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}
export function setToken(t) {
  try {
    if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lasts for this page only */ }
  window.dispatchEvent(new Event('lambdamesh-token'));
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** One request; resolves to {data, index} or throws ApiError with the server's text. */
export async function request(method, path, body, signal) {
  const headers = {};
  const t = token();
  if (t) headers['X-Consul-Token'] = t;
  let payload;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `cannot reach the server: ${e.message}`);
  }
  const text = await res.text();
  if (!res.ok) throw new ApiError(res.status, text.trim() || res.statusText);
  const index = Number(res.headers.get('X-Consul-Index') || 0);
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  return { data, index };
}

export const get = (p, s) => request('GET', p, undefined, s);
export const put = (p, b) => request('PUT', p, b);
export const del = (p) => request('DELETE', p);
export const post = (p, b) => request('POST', p, b);

/** Query string from an object (values encoded). */
export function qs(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/** Which of the given accesses the token holds: [{Resource, Segment, Access}] → [bool]. */
export async function authorize(checks) {
  try {
    const { data } = await post('/v1/internal/acl/authorize', checks);
    return data.map((r) => r.Allow === true);
  } catch {
    return checks.map(() => false);
  }
}

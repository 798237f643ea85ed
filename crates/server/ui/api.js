// Talking to the server's API: the bearer token (kept for this tab only), problem documents
// (RFC 9457) turned into errors the views can show, and the server's clock.

const TOKEN_KEY = 'rpa-orchestrator.api-token';

let token = sessionStorage.getItem(TOKEN_KEY);
let skewMs = 0;
const unauthorizedListeners = new Set();

export function hasToken() {
  return Boolean(token);
}

export function setToken(value) {
  token = value || null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Called with the problem when the server answers 401 (no token, or a wrong one). */
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

export function notifyUnauthorized(problem) {
  for (const listener of unauthorizedListeners) listener(problem);
}

/** The server's clock, as far as its Date headers tell (to the second). */
export function serverNow() {
  return new Date(Date.now() + skewMs);
}

export function noteServerDate(response, sentAt) {
  const date = Date.parse(response.headers.get('date') || '');
  if (!Number.isFinite(date)) return;
  const middle = (sentAt + Date.now()) / 2;
  // The header is truncated to the second: its moment lies within the second after it.
  skewMs = date + 500 - middle;
}

/** A refused or failed request: the server's problem document, or one made up for a failure. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }

  /** The field errors, `[{field, problem}]`. */
  get errors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

/** A key that makes a retried trigger return the first one's job (any context, no UUID API). */
export function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function readProblem(response) {
  const text = await response.text();
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === 'object') return parsed;
  } catch (_) {
    // Not JSON: a proxy's page, most likely.
  }
  return {
    status: response.status,
    title: response.statusText || `HTTP ${response.status}`,
    detail: text.trim().slice(0, 300) || `the server answered ${response.status}`,
  };
}

/**
 * One API call. Resolves to `{status, data, headers}` for a 2xx answer; rejects with an
 * ApiError otherwise (status 0 when the server could not be reached).
 */
export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...authHeaders(), ...headers }, signal, cache: 'no-store' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const sentAt = Date.now();
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    throw new ApiError(0, {
      title: 'Server unreachable',
      detail: 'The server cannot be reached. Check that it is running; this page retries by itself.',
    });
  }
  noteServerDate(response, sentAt);
  if (!response.ok) {
    const problem = await readProblem(response);
    if (response.status === 401) notifyUnauthorized(problem);
    throw new ApiError(response.status, problem);
  }
  const text = response.status === 204 ? '' : await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      throw new ApiError(response.status, { title: 'Unreadable answer', detail: 'the server sent something that is not JSON' });
    }
  }
  return { status: response.status, data, headers: response.headers };
}

/** GET that resolves to the body, or to null when the route does not exist (404). */
export async function getIfPresent(path) {
  try {
    return (await api(path)).data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/** Percent-encodes one path segment (robot addresses may hold anything). */
export function seg(value) {
  return encodeURIComponent(String(value));
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

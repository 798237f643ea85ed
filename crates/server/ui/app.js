// The page's frame: signing in, finding out what this server offers, routing between views
// (hash routes, so the server only ever serves /ui/), and keeping the shown view current: from
// the event stream when the server has one (a view is read again when an event concerns it, and
// not otherwise), and by polling every 750 ms only on a server without the stream.

import { api, ApiError, getIfPresent, hasToken, onUnauthorized, serverNow, setToken } from './api.js';
import { h, fill, updateAgo } from './dom.js';
import { Live } from './live.js';
import * as robots from './views/robots.js';
import * as jobs from './views/jobs.js';
import * as trigger from './views/trigger.js';
import * as schedules from './views/schedules.js';
import * as events from './views/events.js';
import * as webhooks from './views/webhooks.js';
import * as pools from './views/pools.js';
import { RobotCache } from './views/common.js';

// Under a second, so that a change shows "within a second" even without the stream.
const POLL_MS = 750;
// Events come in bursts (a job created and sent, a robot and its jobs): one refresh for a burst,
// at most one every so often, the first 100 ms after the first event.
const EVENT_DELAY_MS = 100;
const EVENT_GAP_MS = 400;
// "3 minutes ago" and "due in 5 seconds" are rewritten this often, without asking the server.
const TICK_MS = 5000;

const el = {
  nav: document.getElementById('nav'),
  navPools: document.getElementById('nav-pools'),
  main: document.getElementById('main'),
  view: document.getElementById('view'),
  signIn: document.getElementById('sign-in'),
  signInForm: document.getElementById('sign-in-form'),
  token: document.getElementById('token'),
  tokenError: document.getElementById('token-error'),
  signOut: document.getElementById('sign-out'),
  live: document.getElementById('live'),
  toast: document.getElementById('toast'),
  alert: document.getElementById('alert'),
  alertText: document.getElementById('alert-text'),
  confirm: document.getElementById('confirm'),
};

let current = null;
let currentKey = '';
let started = false;
let pollTimer = null;
let lastRefresh = 0;
let lastTick = 0;
let staleWhileHidden = false;
let wakeTimer = null;
let wakeAtMs = Infinity;
let toastTimer = null;

const ctx = {
  caps: { pools: false, robotPools: false, webhooks: false, retry: false, pause: false, events: null },
  robots: new RobotCache(),
  live: null,
  toast,
  confirm,
  navigate(hash) {
    if (location.hash === hash) route(true);
    else location.hash = hash;
  },
  wakeAt,
};

/**
 * Reads the shown view again at this moment (an RFC 3339 time of the server's clock): a job
 * that becomes due changes its reason without any event. Only the earliest moment is kept.
 */
function wakeAt(iso) {
  const at = Date.parse(iso);
  if (!Number.isFinite(at)) return;
  const wait = at - serverNow().getTime() + 300;
  if (wait <= 0 || wait > 86400000) return;
  const target = Date.now() + wait;
  if (wakeTimer && target >= wakeAtMs) return;
  clearTimeout(wakeTimer);
  wakeAtMs = target;
  wakeTimer = setTimeout(() => {
    wakeTimer = null;
    wakeAtMs = Infinity;
    refreshNow();
  }, wait);
}

function clearWake() {
  clearTimeout(wakeTimer);
  wakeTimer = null;
  wakeAtMs = Infinity;
}

/**
 * Shows a short message in the status area (read out by screen readers). An error stays until
 * it is dismissed, in an alert.
 */
function toast(message, kind = 'ok') {
  if (kind === 'error') {
    el.alertText.textContent = message;
    el.alert.hidden = false;
    return;
  }
  clearTimeout(toastTimer);
  el.toast.className = `toast toast-${kind}`;
  el.toast.textContent = message;
  toastTimer = setTimeout(() => {
    el.toast.textContent = '';
    el.toast.className = 'toast';
  }, 8000);
}

/** Asks before something that cannot be undone; resolves to true on yes. */
function confirm({ title, text, yes, no = 'Keep' }) {
  return new Promise((resolve) => {
    if (el.confirm.open) {
      // A second click while one question is open: that question stands.
      resolve(false);
      return;
    }
    document.getElementById('confirm-title').textContent = title;
    document.getElementById('confirm-text').textContent = text;
    document.getElementById('confirm-yes').textContent = yes;
    document.getElementById('confirm-no').textContent = no;
    el.confirm.returnValue = '';
    el.confirm.addEventListener('close', () => resolve(el.confirm.returnValue === 'yes'), { once: true });
    el.confirm.showModal();
    document.getElementById('confirm-no').focus();
  });
}

/** What this server offers, from its OpenAPI document and a look at the optional lists. */
async function detect() {
  const doc = await getIfPresent('/api/openapi.json');
  const paths = doc && typeof doc.paths === 'object' ? doc.paths : {};
  const has = (path, method) => Boolean(paths[path] && paths[path][method]);
  // A route the document does not list may still be there: ask (a 404 means it is not).
  const present = async (path) => (await getIfPresent(path)) !== null;
  const [poolList, hooks] = await Promise.all([
    has('/api/pools', 'get') || present('/api/pools'),
    has('/api/webhooks', 'get') || present('/api/webhooks'),
  ]);
  ctx.caps.pools = poolList;
  ctx.caps.robotPools = poolList || has('/api/robots/{address}/pools', 'put');
  ctx.caps.webhooks = hooks;
  ctx.caps.retry = has('/api/jobs/{id}/retry', 'post');
  ctx.caps.pause = has('/api/schedules/{id}/pause', 'post') && has('/api/schedules/{id}/resume', 'post');
  el.navPools.hidden = !ctx.caps.pools;
}

function showSignIn(message) {
  started = false;
  stopPolling();
  clearWake();
  // Whoever signs in next starts a stream of their own: nothing of this one (its feed, its
  // cursor) stays in the tab.
  if (ctx.live) ctx.live.stop();
  ctx.live = null;
  if (current && current.unmount) current.unmount();
  current = null;
  currentKey = '';
  el.nav.hidden = true;
  el.view.replaceChildren();
  el.signOut.hidden = true;
  el.live.textContent = '';
  el.signIn.hidden = false;
  el.tokenError.textContent = message || '';
  if (message) el.token.setAttribute('aria-invalid', 'true');
  else el.token.removeAttribute('aria-invalid');
  document.title = 'Sign in · RPA orchestrator';
  el.token.focus();
}

function showFailure(error) {
  el.signIn.hidden = true;
  fill(el.view, h('section', { class: 'notice notice-error', role: 'alert' },
    h('h1', {}, 'The server cannot be read'),
    h('p', {}, error instanceof ApiError ? error.message : String(error)),
    h('button', { type: 'button', class: 'primary', onclick: () => boot() }, 'Try again')));
}

async function boot(moveFocus = false) {
  try {
    await detect();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showSignIn(hasToken() ? error.message : '');
      return;
    }
    showFailure(error);
    return;
  }
  start(moveFocus);
}

function start(moveFocus) {
  started = true;
  el.signIn.hidden = true;
  el.nav.hidden = false;
  el.signOut.hidden = !hasToken();
  if (!ctx.live) {
    ctx.live = new Live({
      onEvent: (event) => {
        ctx.robots.onEvent(event);
        if (current && current.onEvent) current.onEvent(event);
        else refreshSoon();
      },
      onState: showLiveState,
      onResync: () => refreshSoon(),
    });
  }
  ctx.live.start();
  showLiveState(ctx.live.state);
  route(moveFocus);
  startPolling();
}

const LIVE_TEXT = {
  connecting: ['Connecting…', 'Opening the event stream.'],
  live: ['Live', 'Changes arrive through the event stream (GET /api/events).'],
  reconnecting: ['Reconnecting…', 'The event stream was cut; the page reconnects by itself and then shows what happened meanwhile.'],
  unavailable: ['Refreshing every second', 'This server has no event stream (GET /api/events answers 404), so the page asks for the shown view every second.'],
  unauthorized: ['Signed out', 'The server refused the token.'],
};

function showLiveState(state) {
  ctx.caps.events = state === 'unavailable' ? false : (state === 'live' ? true : ctx.caps.events);
  const [text, title] = LIVE_TEXT[state] || ['', ''];
  el.live.textContent = text;
  el.live.title = title;
  el.live.dataset.state = state;
  if (current && current.onLiveState) current.onLiveState(state);
}

/**
 * Polls the shown view every 750 ms on a server without the stream. With the stream, only what
 * the stream does not carry is asked for, at the pace the view sets (`pollMs`: a robot's
 * messages, a webhook's deliveries); while the stream reconnects nothing is, since resuming with
 * Last-Event-ID brings every change made meanwhile.
 */
function startPolling() {
  stopPolling();
  pollTimer = setInterval(() => {
    if (!started || document.visibilityState !== 'visible' || !current) return;
    if (Date.now() - lastTick >= TICK_MS) {
      lastTick = Date.now();
      updateAgo(el.view, serverNow().getTime());
    }
    const state = ctx.live ? ctx.live.state : 'connecting';
    let due = null;
    if (state === 'unavailable') due = POLL_MS;
    else if (state === 'live' && current.pollMs) due = current.pollMs;
    if (due !== null && Date.now() - lastRefresh >= due) refreshNow();
  }, 250);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

function refreshNow() {
  if (document.visibilityState !== 'visible') {
    // A hidden tab asks for nothing; it reads its view when it is shown again.
    staleWhileHidden = true;
    return;
  }
  lastRefresh = Date.now();
  if (current && current.refresh) current.refresh();
}

let soonTimer = null;
/** One refresh for a burst of events: 100 ms after the first, and at most one per 400 ms. */
function refreshSoon() {
  if (soonTimer) return;
  const wait = Math.max(EVENT_DELAY_MS, lastRefresh + EVENT_GAP_MS - Date.now());
  soonTimer = setTimeout(() => {
    soonTimer = null;
    refreshNow();
  }, wait);
}
ctx.refreshSoon = refreshSoon;

const VIEWS = {
  robots: { module: robots, name: 'Robots' },
  jobs: { module: jobs, name: 'Jobs' },
  trigger: { module: trigger, name: 'Trigger a job', nav: 'jobs' },
  schedules: { module: schedules, name: 'Schedules' },
  events: { module: events, name: 'Events' },
  webhooks: { module: webhooks, name: 'Webhooks' },
  pools: { module: pools, name: 'Pools' },
};

/** `#/jobs/12?status=Failed` → {view: 'jobs', path: ['12'], params}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [pathPart, search = ''] = raw.split('?');
  const parts = pathPart.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch (_) {
      return p;
    }
  });
  let view = parts.shift() || 'robots';
  if (view === 'jobs' && parts[0] === 'new') {
    view = 'trigger';
    parts.shift();
  }
  return { view, path: parts, params: new URLSearchParams(search), key: raw };
}

function route(moveFocus) {
  if (!started) return;
  const where = parseHash();
  if (where.key === currentKey && current) return;
  const entry = VIEWS[where.view];
  if (current && current.unmount) current.unmount();
  current = null;
  clearWake();
  currentKey = where.key;
  for (const link of el.nav.querySelectorAll('a[data-view]')) {
    const active = link.dataset.view === (entry ? entry.nav || where.view : '');
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  el.view.replaceChildren();
  if (!entry || (where.view === 'pools' && !ctx.caps.pools)) {
    document.title = 'Not found · RPA orchestrator';
    fill(el.view, h('section', { class: 'notice' },
      h('h1', { tabindex: '-1' }, 'No such view'),
      h('p', {}, 'Choose a view in the navigation above, or ', h('a', { href: '#/robots' }, 'start over'), '.')));
  } else {
    current = entry.module.mount(el.view, where, ctx);
    document.title = `${(current && current.title) || entry.name} · RPA orchestrator`;
    lastRefresh = Date.now();
  }
  if (moveFocus) {
    const heading = el.view.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
  }
}

el.signInForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const value = el.token.value.trim();
  if (!value) {
    el.tokenError.textContent = 'Enter the API token.';
    el.token.setAttribute('aria-invalid', 'true');
    el.token.focus();
    return;
  }
  setToken(value);
  try {
    await api('/api/openapi.json');
  } catch (error) {
    setToken(null);
    showSignIn(error instanceof ApiError ? error.message : String(error));
    return;
  }
  el.token.value = '';
  el.tokenError.textContent = '';
  el.token.removeAttribute('aria-invalid');
  await boot(true);
  if (ctx.live) ctx.live.wake();
});

document.getElementById('alert-close').addEventListener('click', () => {
  el.alert.hidden = true;
  el.alertText.textContent = '';
});

el.signOut.addEventListener('click', () => {
  setToken(null);
  showSignIn('');
});

onUnauthorized((problem) => {
  if (!started) return;
  showSignIn(problem && problem.detail ? problem.detail : 'The server asks for the API token again.');
});

window.addEventListener('hashchange', () => route(true));
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible' || !started) return;
  const live = ctx.live && ctx.live.state === 'live';
  // With the stream, a view that missed nothing while hidden need not be read again.
  if (!live || staleWhileHidden || (current && current.pollMs)) refreshNow();
  staleWhileHidden = false;
});

boot();

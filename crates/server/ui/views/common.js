// Pieces the views share: the robots the page knows of, refreshes that never overlap, keyset
// paging, error banners, and the plain-words reason a job is where it is.

import { api, ApiError, seg, serverNow } from '../api.js';
import { h, fill, formatParts, agoText, badge } from '../dom.js';

/**
 * What the page knows of robots: their records by address (from lists, lookups and events), and
 * a first page of them as suggestions. A server may hold tens of thousands of robots, so nothing
 * here reads them all.
 */
export class RobotCache {
  constructor() {
    this.map = new Map();
    this.suggested = null;
    this.suggestedAt = 0;
  }

  /** Up to 500 robots for the address suggestions (refreshed at most every 30 s). */
  async suggestions() {
    if (!this.suggested || Date.now() - this.suggestedAt > 30000) {
      const { data } = await api('/api/robots?limit=500');
      this.suggested = data.items;
      this.suggestedAt = Date.now();
      for (const robot of data.items) this.set(robot);
    }
    return this.suggested;
  }

  /** The record as last seen (no request). */
  get(address) {
    const entry = this.map.get(address);
    return entry ? entry.robot : undefined;
  }

  set(robot) {
    if (robot && robot.robot_address) this.map.set(robot.robot_address, { robot, at: Date.now() });
  }

  /** The robot's record, from the server (null when it is not known). */
  async fetch(address) {
    try {
      const { data } = await api(`/api/robots/${seg(address)}`);
      this.set(data);
      return data;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  }

  /** Makes sure the records of these robots are at most `maxAgeMs` old (25 at a time at most). */
  async refresh(addresses, maxAgeMs = 3000) {
    const stale = [...new Set(addresses)].filter((address) => {
      const entry = this.map.get(address);
      return address && (!entry || Date.now() - entry.at > maxAgeMs);
    }).slice(0, 25);
    await Promise.all(stale.map((address) => this.fetch(address).catch(() => null)));
  }

  onEvent(event) {
    this.set(event && event.data && event.data.robot);
  }
}

/** Wraps a loader so that calls never overlap: a call during a run asks for one more run. */
export function refresher(load) {
  let running = null;
  let again = false;
  return function refresh() {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await load();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
}

/** A place for "the server cannot be reached" and similar, cleared on the next success. */
export function banner() {
  const el = h('div', { class: 'banner', role: 'alert', hidden: true });
  return {
    el,
    show(error) {
      const message = error instanceof ApiError ? error.message : String(error && error.message ? error.message : error);
      fill(el, message);
      el.hidden = false;
    },
    clear() {
      if (!el.hidden) {
        el.hidden = true;
        el.replaceChildren();
      }
    },
  };
}

/**
 * Keyset paging (`after` = the last key seen) with a way back: the keys of the pages before are
 * kept, so "Previous page" works although the API only pages forwards.
 */
export class Pager {
  constructor(label, onChange) {
    this.stack = [];
    this.after = null;
    this.next = null;
    this.onChange = onChange;
    this.first = h('button', { type: 'button', class: 'quiet', onclick: () => this.go([], null) }, 'First page');
    this.prev = h('button', { type: 'button', class: 'quiet', onclick: () => this.back() }, 'Previous page');
    this.forward = h('button', { type: 'button', class: 'quiet', onclick: () => this.ahead() }, 'Next page');
    this.status = h('span', { class: 'muted' });
    this.el = h('nav', { class: 'pager', 'aria-label': label }, this.first, this.prev, this.status, this.forward);
    this.update(null, 0);
  }

  reset() {
    this.stack = [];
    this.after = null;
  }

  go(stack, after) {
    this.stack = stack;
    this.after = after;
    this.onChange();
  }

  back() {
    const stack = this.stack.slice();
    const after = stack.pop();
    this.go(stack, after === undefined ? null : after);
  }

  ahead() {
    if (this.next === null) return;
    this.go([...this.stack, this.after], this.next);
  }

  /** After a page was read: its `next_after` and how many items it held. */
  update(next, count) {
    this.next = next === undefined ? null : next;
    const page = this.stack.length + 1;
    this.first.hidden = page === 1;
    this.prev.hidden = page <= 2;
    this.forward.hidden = this.next === null;
    this.status.textContent = page === 1 && this.next === null ? '' : `Page ${page}`;
    this.el.hidden = page === 1 && this.next === null;
    void count;
  }
}

/** The moment in the browser's zone, short: "14:02:05" today, else with the date. */
export function shortLocal(iso) {
  const date = new Date(iso);
  const text = formatParts(date).text;
  const today = formatParts(new Date()).text.slice(0, 10);
  return text.startsWith(today) ? text.slice(11) : text;
}

/** A job's status as a badge. */
export function statusBadge(status) {
  return badge(status, status);
}

/** A robot's presence as a badge. */
export function presence(robot) {
  return robot.online ? badge('online', 'online') : badge('offline', 'offline');
}

/**
 * Why a job is where it is, in plain words: "due, robot offline since 14:02", "no free robot in
 * pool finance". `robot` is the job's robot record when known, `pool` the pool's summary. A
 * string, or parts holding a "due in 3 minutes" that the page keeps true.
 */
export function why(job, { robot, pool } = {}) {
  const now = serverNow();
  const address = job.robot_address;
  switch (job.status) {
    case 'Pending': {
      const runAt = new Date(job.run_at);
      if (runAt > now) return ['Waiting for its time: due ', agoText(job.run_at, now.getTime()), `, at ${shortLocal(job.run_at)}.`];
      if (job.pool && !address) {
        if (pool) {
          if (!pool.robots) return `Due, but pool ${job.pool} has no robots yet: add robots to it.`;
          if (!pool.online) return `Due, but no robot of pool ${job.pool} is online.`;
          return `Due, no free robot in pool ${job.pool} (${pool.online} online, ${pool.free} free).`;
        }
        return `Due, waiting for a free robot in pool ${job.pool}.`;
      }
      if (robot && !robot.online) {
        if (!robot.last_seen) return `Due, robot ${address} has never connected: it is sent when the robot registers.`;
        return `Due, robot offline since ${shortLocal(robot.last_seen)}: it is sent when the robot connects.`;
      }
      if (job.attempts > 0) {
        return `Due, sent ${job.attempts} ${job.attempts === 1 ? 'time' : 'times'} without the robot's acknowledgement: it is sent again.`;
      }
      if (robot && robot.online) return 'Due, being sent to its robot now.';
      return 'Due, waiting for its robot.';
    }
    case 'Executed':
      return `Sent to ${address || 'its robot'}${job.attempts > 1 ? ` (attempt ${job.attempts})` : ''}; waiting for the robot's report (robots that do not report stay here).`;
    case 'Succeeded':
      return 'The robot reported success.';
    case 'Failed':
      return job.last_error ? `Failed: ${job.last_error}` : 'Failed (no reason was recorded).';
    case 'Cancelled':
      return job.last_error ? `Cancelled: ${job.last_error}` : 'Cancelled before it was sent.';
    default:
      return '';
  }
}

/** Asks the page to read its view again when the first of these pending jobs becomes due. */
export function wakeForDue(jobs, ctx) {
  const now = serverNow();
  for (const job of jobs) {
    if (job.status === 'Pending' && new Date(job.run_at) > now) ctx.wakeAt(job.run_at);
  }
}

/** `#/robots/ADDR` and friends. */
export function robotLink(address, text = address) {
  return h('a', { href: `#/robots/${encodeURIComponent(address)}` }, text);
}

export function jobLink(id, attrs = {}) {
  return h('a', { href: `#/jobs/${id}`, ...attrs }, String(id));
}

export function scheduleLink(id, text = String(id)) {
  return h('a', { href: `#/schedules/${id}` }, text);
}

/** The package name of a job or schedule (its `package` object as the trigger gave it). */
export function packageName(item) {
  const pkg = item && item.package;
  return pkg && typeof pkg === 'object' && typeof pkg.package_name === 'string' ? pkg.package_name : '';
}

/** Who a job or schedule is for: the robot, or the pool until a robot is assigned. */
export function target(item) {
  if (item.robot_address) {
    const name = item.robot_name ? ` (${item.robot_name})` : '';
    return [robotLink(item.robot_address), name];
  }
  if (item.pool) return ['pool ', h('a', { href: `#/pools/${encodeURIComponent(item.pool)}` }, item.pool)];
  return '—';
}

/** The heading row of a view: its title, and links or buttons on the right. */
export function heading(title, ...actions) {
  return h('div', { class: 'view-head' }, h('h1', {}, title), h('div', { class: 'view-actions' }, ...actions));
}

/** Runs an action button's request, disabling the button meanwhile; shows the outcome. */
export async function act(button, ctx, run, done) {
  button.disabled = true;
  try {
    const result = await run();
    if (done) ctx.toast(done(result));
    return result;
  } catch (error) {
    ctx.toast(error instanceof ApiError ? `Refused: ${error.message}` : String(error), 'error');
    return undefined;
  } finally {
    if (button.isConnected) button.disabled = false;
    ctx.refreshSoon();
  }
}

// Pools (pools.md): groups of robots that jobs are given to whichever member is free. Shown
// only when the server has `GET /api/pools`.

import { api, ApiError, seg } from '../api.js';
import { h, fill, table, cell, syncRows, time, facts } from '../dom.js';
import { refresher, banner, heading, presence, robotLink } from './common.js';

export function mount(root, where, ctx) {
  if (where.path.length) return detail(root, where.path[0], ctx);
  return list(root, ctx);
}

function list(root, ctx) {
  const errors = banner();
  const grid = table('Pools', ['Pool', 'Robots', 'Online', 'Free', 'Waiting jobs']);
  const empty = h('div', { class: 'empty', hidden: true },
    h('p', {}, 'No pools yet: open a robot from the Robots view and give it pools, then trigger jobs for a pool.'));
  grid.el.hidden = true;
  fill(root, heading('Pools'), errors.el, grid.el, empty);

  const refresh = refresher(async () => {
    let data;
    try {
      ({ data } = await api('/api/pools'));
      errors.clear();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      return;
    }
    const items = data.items || [];
    empty.hidden = items.length > 0;
    grid.el.hidden = !items.length;
    syncRows(grid.tbody, items, (p) => p.name, (pool) => h('tr', {},
      cell('Pool', h('a', { href: `#/pools/${encodeURIComponent(pool.name)}` }, pool.name)),
      cell('Robots', String(pool.robots)),
      cell('Online', String(pool.online)),
      cell('Free', String(pool.free)),
      cell('Waiting jobs', pool.waiting_jobs
        ? h('a', { href: `#/jobs?status=Pending&pool=${encodeURIComponent(pool.name)}` }, String(pool.waiting_jobs))
        : '0')));
  });
  refresh();
  return {
    refresh,
    onEvent(event) {
      const type = String(event.type || '');
      if (type.startsWith('robot.') || type.startsWith('job.')) ctx.refreshSoon();
    },
  };
}

function detail(root, name, ctx) {
  const errors = banner();
  const info = h('div', { class: 'panel' });
  const robots = table(`Robots of pool ${name}`, ['Address', 'Name', 'Status', 'Last seen']);
  const robotsEmpty = h('p', { class: 'empty', hidden: true }, 'No robot belongs to this pool yet: add it on a robot\'s page.');
  fill(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/pools' }, 'Back to the list'), ' / ', name),
    heading(`Pool ${name}`,
      h('a', { class: 'button', href: `#/jobs/new?pool=${encodeURIComponent(name)}` }, 'Trigger a job for this pool'),
      h('a', { class: 'button', href: `#/jobs?pool=${encodeURIComponent(name)}` }, 'Its job list')),
    errors.el, info, h('h2', {}, 'Robots'), robots.el, robotsEmpty);

  const refresh = refresher(async () => {
    let pool;
    try {
      ({ data: pool } = await api(`/api/pools/${seg(name)}`));
      errors.clear();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      return;
    }
    fill(info, facts([
      ['Robots', String(pool.robots)],
      ['Online', String(pool.online)],
      ['Free', String(pool.free)],
      ['Waiting jobs', String(pool.waiting_jobs)],
    ]));
    // pools.md names no field for the member list ("robots" is the count): take the array of
    // robot records, whatever its name.
    const list = Object.values(pool).find((value) => Array.isArray(value)
      && value.every((r) => r && typeof r === 'object' && 'robot_address' in r)) || [];
    robotsEmpty.hidden = list.length > 0;
    robots.el.hidden = !list.length;
    syncRows(robots.tbody, list, (r) => r.robot_address, (r) => h('tr', {},
      cell('Address', robotLink(r.robot_address)),
      cell('Name', r.robot_name || '—'),
      cell('Status', presence(r)),
      cell('Last seen', time(r.last_seen))));
  });
  refresh();
  return {
    title: `Pool ${name}`,
    refresh,
    onEvent(event) {
      const type = String(event.type || '');
      if (type.startsWith('robot.') || type.startsWith('job.')) ctx.refreshSoon();
    },
  };
}

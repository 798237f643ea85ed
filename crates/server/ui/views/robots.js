// Robots: who is connected, who was, and what each one was sent and said.

import { api, ApiError, seg, query } from '../api.js';
import { h, fill, table, cell, syncRows, time, agoText, facts, jsonBlock, field, setFieldError } from '../dom.js';
import {
  refresher, banner, Pager, presence, heading, robotLink, jobLink, statusBadge, packageName, why, wakeForDue,
} from './common.js';

export function mount(root, where, ctx) {
  if (where.path.length) return detail(root, where.path[0], ctx);
  return list(root, where, ctx);
}

/** Where a robot connects to this server, as the page sees it. */
export function robotUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
}

function list(root, where, ctx) {
  const online = where.params.get('online') || '';
  const errors = banner();
  const presenceSelect = h('select', { id: 'robots-presence' },
    h('option', { value: '' }, 'All robots'),
    h('option', { value: 'true' }, 'Online only'),
    h('option', { value: 'false' }, 'Offline only'));
  presenceSelect.value = online;
  presenceSelect.addEventListener('change', () => {
    ctx.navigate(`#/robots${query({ online: presenceSelect.value })}`);
  });
  const summary = h('p', { class: 'summary', 'aria-live': 'polite' });
  const showPools = () => ctx.caps.robotPools;
  const grid = table('Robots', ['Address', 'Name', 'Status', ...(showPools() ? ['Pools'] : []), 'Last seen', 'Connection']);
  const empty = h('div', { class: 'empty', hidden: true });
  const pager = new Pager('Robot pages', () => refresh());
  grid.el.hidden = true;

  fill(root,
    heading('Robots', h('a', { class: 'button', href: '#/jobs/new' }, 'Trigger a job')),
    errors.el,
    h('div', { class: 'filters' }, h('label', { for: 'robots-presence' }, 'Show'), presenceSelect),
    summary, grid.el, empty, pager.el);

  function row(robot) {
    return h('tr', {},
      cell('Address', robotLink(robot.robot_address), ''),
      cell('Name', robot.robot_name || '—'),
      cell('Status', presence(robot)),
      showPools() ? cell('Pools', (robot.pools || []).join(', ') || '—') : null,
      cell('Last seen', time(robot.last_seen), robot.last_seen ? h('span', { class: 'muted small' }, ' ', agoText(robot.last_seen)) : null),
      cell('Connection', robot.connection_id
        ? h('code', { class: robot.online ? 'small' : 'small muted', title: robot.online ? 'current connection' : 'last connection' }, robot.connection_id)
        : h('span', { class: 'muted' }, '—')));
  }

  const refresh = refresher(async () => {
    let data;
    try {
      ({ data } = await api(`/api/robots${query({ online, limit: 100, after: pager.after })}`));
      errors.clear();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      return;
    }
    for (const robot of data.items) ctx.robots.set(robot);
    const items = data.items;
    const up = items.filter((r) => r.online).length;
    const more = data.next_after !== null && data.next_after !== undefined;
    summary.textContent = items.length
      ? `${items.length} ${items.length === 1 ? 'robot' : 'robots'}${more ? ' on this page' : ''}, ${up} online.`
      : '';
    if (!items.length) {
      fill(empty, online || pager.after !== null
        ? h('p', {}, online === 'true' ? 'No robot is online right now.' : 'No robot matches.')
        : [h('p', {}, 'No robots yet: point a robot at ', h('code', {}, robotUrl()), '.'),
          h('p', { class: 'muted' }, 'A robot appears here when it connects and sends its metadata; see the README for the robot client.')]);
    }
    empty.hidden = items.length > 0;
    grid.el.hidden = items.length === 0;
    syncRows(grid.tbody, items, (r) => r.robot_address, row, (r) => JSON.stringify([r, showPools()]));
    pager.update(data.next_after, items.length);
  });
  refresh();

  return {
    refresh,
    onEvent(event) {
      if (String(event.type || '').startsWith('robot.')) ctx.refreshSoon();
    },
  };
}

function detail(root, address, ctx) {
  const errors = banner();
  const title = h('h1', {}, `Robot ${address}`);
  const info = h('div', { class: 'panel' });
  const triggerLink = h('a', { class: 'button', href: `#/jobs/new?robot=${encodeURIComponent(address)}` }, 'Trigger a job for this robot');
  const poolsBox = h('div');
  const jobsGrid = table('Jobs of this robot', ['Job', 'Status', 'Package', 'Run at', 'Attempts', 'Why']);
  const jobsEmpty = h('p', { class: 'empty', hidden: true }, 'No jobs for this robot yet: trigger one with the button above.');
  const jobsPager = new Pager('Pages of this robot\'s jobs', () => refresh());
  const messagesGrid = table('Messages from this robot', ['Received', 'Connection', 'Message']);
  const messagesEmpty = h('p', { class: 'empty', hidden: true }, 'This robot has sent no messages yet.');
  const messagesPager = new Pager('Pages of messages', () => refresh());
  let robot = null;

  fill(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/robots' }, 'Back to the list'), ' / ', address),
    h('div', { class: 'view-head' }, title, h('div', { class: 'view-actions' }, triggerLink)),
    errors.el, info, poolsBox,
    h('h2', {}, 'Jobs'), jobsGrid.el, jobsEmpty, jobsPager.el,
    h('h2', {}, 'Messages'), messagesGrid.el, messagesEmpty, messagesPager.el);

  if (ctx.caps.robotPools) poolsBox.append(poolsForm(address, ctx, () => robot, () => refresh()));

  const refresh = refresher(async () => {
    try {
      const [one, jobs, messages] = await Promise.all([
        api(`/api/robots/${seg(address)}`),
        api(`/api/robots/${seg(address)}/jobs${query({ limit: 25, after: jobsPager.after })}`),
        api(`/api/robots/${seg(address)}/messages${query({ limit: 25, after: messagesPager.after })}`),
      ]);
      errors.clear();
      robot = one.data;
      ctx.robots.set(robot);
      renderInfo(robot);
      jobsEmpty.hidden = jobs.data.items.length > 0;
      jobsGrid.el.hidden = !jobs.data.items.length;
      syncRows(jobsGrid.tbody, jobs.data.items, (j) => j.id, (job) => h('tr', {},
        cell('Job', jobLink(job.id, { 'data-focus': `job-${job.id}` })),
        cell('Status', statusBadge(job.status)),
        cell('Package', packageName(job)),
        cell('Run at', time(job.run_at)),
        cell('Attempts', String(job.attempts)),
        cell('Why', h('span', { class: 'why' }, why(job, { robot })))), (j) => JSON.stringify([j, robot.online, why(j, { robot })]));
      jobsPager.update(jobs.data.next_after);
      wakeForDue(jobs.data.items, ctx);
      messagesEmpty.hidden = messages.data.items.length > 0;
      messagesGrid.el.hidden = !messages.data.items.length;
      syncRows(messagesGrid.tbody, messages.data.items, (m) => m.id, (message) => h('tr', {},
        cell('Received', time(message.received_at)),
        cell('Connection', h('code', { class: 'small' }, message.connection_id)),
        cell('Message', h('code', { class: 'message' }, typeof message.value === 'string' ? message.value : JSON.stringify(message.value)))));
      messagesPager.update(messages.data.next_after);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        fill(info, h('p', { class: 'empty' }, `No robot with address ${address} has registered or been recorded.`));
        errors.clear();
        return;
      }
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
    }
  });

  function renderInfo(r) {
    fill(info, facts([
      ['Status', [presence(r), r.online ? '' : h('span', { class: 'muted' }, r.last_seen ? [' since ', agoText(r.last_seen)] : ' (never connected)')]],
      ['Name', r.robot_name || '—'],
      ['Address', h('code', {}, r.robot_address)],
      'pools' in r ? ['Pools', (r.pools || []).join(', ') || 'none'] : null,
      ['User id', r.user_id === null || r.user_id === undefined ? '—' : String(r.user_id)],
      ['Connection', r.connection_id ? h('code', {}, r.connection_id) : '—'],
      r.instance ? ['Server instance', h('code', {}, r.instance)] : null,
      ['First seen', time(r.first_seen)],
      ['Last seen', time(r.last_seen)],
      ['Metadata', r.metadata === null || r.metadata === undefined ? '—' : jsonBlock(r.metadata, 'Metadata')],
    ]));
  }

  refresh();
  return {
    title: `Robot ${address}`,
    refresh,
    // A robot's messages are not events: with the stream, they are the one thing asked for.
    pollMs: 5000,
    onEvent(event) {
      const data = event.data || {};
      const mine = event.subject === `robots/${address}`
        || (data.job && data.job.robot_address === address);
      if (mine) ctx.refreshSoon();
    },
  };
}

/** The robot's pools (pools.md): `PUT /api/robots/{address}/pools`. */
function poolsForm(address, ctx, currentRobot, after) {
  const input = h('input', { type: 'text', name: 'pools', autocomplete: 'off', placeholder: 'finance, night' });
  const status = h('p', { class: 'form-error', role: 'alert' });
  let touched = false;
  input.addEventListener('input', () => { touched = true; });
  const form = h('form', { class: 'inline-form', novalidate: true },
    field('Pools', input, { hint: 'Pool names separated by commas; empty removes the robot from every pool.' }),
    h('button', { type: 'submit' }, 'Save pools'), status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const pools = input.value.split(',').map((p) => p.trim()).filter(Boolean);
    setFieldError(input, '');
    status.textContent = '';
    try {
      await api(`/api/robots/${seg(address)}/pools`, { method: 'PUT', body: { pools } });
      touched = false;
      ctx.toast(`Pools of ${address} saved.`);
      after();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      status.textContent = error.message;
      const fieldError = error.errors.map((e) => e.problem).join(' ');
      setFieldError(input, fieldError);
    }
  });
  // Filled from the record until the operator starts typing.
  const sync = setInterval(() => {
    if (!form.isConnected) {
      clearInterval(sync);
      return;
    }
    const robot = currentRobot();
    if (!touched && robot && document.activeElement !== input) input.value = (robot.pools || []).join(', ');
  }, 500);
  return h('section', { class: 'panel', 'aria-label': 'Pools of this robot' }, form);
}

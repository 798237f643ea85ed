// Jobs: the newest first, filtered and paged; one job with its history and, in plain words,
// why it is where it is; cancel, force and retry.

import { api, ApiError, query, randomKey, serverNow } from '../api.js';
import { h, fill, table, cell, syncRows, time, utcText, facts, jsonBlock, uid } from '../dom.js';
import {
  refresher, banner, Pager, heading, jobLink, scheduleLink, statusBadge, packageName, target, why, act, wakeForDue,
} from './common.js';

export const STATUSES = ['Pending', 'Executed', 'Succeeded', 'Failed', 'Cancelled'];

export function mount(root, where, ctx) {
  if (where.path.length) return detail(root, where.path[0], ctx);
  return list(root, where, ctx);
}

/** Pool summaries by name, when a pending pool job needs one for its reason. */
async function poolsFor(jobs, ctx) {
  if (!ctx.caps.pools || !jobs.some((j) => j.pool && j.status === 'Pending')) return new Map();
  try {
    const { data } = await api('/api/pools');
    return new Map((data.items || []).map((p) => [p.name, p]));
  } catch (_) {
    return new Map();
  }
}

/** The buttons a job in this state takes, each doing its request and reporting the outcome. */
export function jobActions(job, ctx, describedBy) {
  const buttons = [];
  const attrs = (name) => ({ type: 'button', 'aria-describedby': describedBy, 'data-focus': `${name}-${job.id}` });
  if (job.status === 'Pending') {
    const cancel = h('button', attrs('cancel'), 'Cancel');
    cancel.addEventListener('click', () => act(cancel, ctx,
      () => api(`/api/jobs/${job.id}/cancel`, { method: 'POST' }),
      ({ data }) => `Job ${data.id} cancelled.`));
    const force = h('button', attrs('force'), 'Force');
    force.addEventListener('click', () => act(force, ctx,
      () => api(`/api/jobs/${job.id}/force`, { method: 'POST' }),
      ({ data }) => (data.status === 'Executed'
        ? `Job ${data.id} sent to its robot now.`
        : `Job ${data.id} is due now: it is sent when its robot connects.`)));
    buttons.push(cancel, force);
  }
  if ((job.status === 'Failed' || job.status === 'Cancelled') && ctx.caps.retry) {
    const retry = h('button', attrs('retry'), 'Retry');
    const key = randomKey();
    retry.addEventListener('click', async () => {
      const created = await act(retry, ctx,
        () => api(`/api/jobs/${job.id}/retry`, { method: 'POST', headers: { 'Idempotency-Key': key } }),
        ({ data }) => `Job ${data.id} created to run job ${job.id} again.`);
      if (created && created.data) ctx.navigate(`#/jobs/${created.data.id}`);
    });
    buttons.push(retry);
  }
  return buttons;
}

function list(root, where, ctx) {
  const filter = {
    status: where.params.get('status') || '',
    robot: where.params.get('robot') || '',
    pool: where.params.get('pool') || '',
  };
  const errors = banner();
  const statusSelect = h('select', { id: uid('status') },
    h('option', { value: '' }, 'Any status'), STATUSES.map((s) => h('option', { value: s }, s)));
  statusSelect.value = filter.status;
  const robotInput = h('input', { id: uid('robot'), type: 'text', value: filter.robot, list: 'jobs-robots', autocomplete: 'off', placeholder: 'address' });
  const robotList = h('datalist', { id: 'jobs-robots' });
  const poolInput = ctx.caps.pools ? h('input', { id: uid('pool'), type: 'text', value: filter.pool, autocomplete: 'off' }) : null;
  const apply = () => {
    ctx.navigate(`#/jobs${query({ status: statusSelect.value, robot: robotInput.value.trim(), pool: poolInput ? poolInput.value.trim() : '' })}`);
  };
  statusSelect.addEventListener('change', apply);
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Job filters' },
    h('span', { class: 'filter' }, h('label', { for: statusSelect.id }, 'Status'), statusSelect),
    h('span', { class: 'filter' }, h('label', { for: robotInput.id }, 'Robot'), robotInput, robotList),
    poolInput ? h('span', { class: 'filter' }, h('label', { for: poolInput.id }, 'Pool'), poolInput) : null,
    h('button', { type: 'submit' }, 'Filter'),
    (filter.status || filter.robot || filter.pool) ? h('a', { href: '#/jobs' }, 'Clear filters') : null);
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  const grid = table('Jobs', ['Job', 'Status', 'Package', 'Robot', 'Run at', 'Attempts', 'Updated', 'Actions']);
  const empty = h('div', { class: 'empty', hidden: true });
  const pager = new Pager('Job pages', () => refresh());
  grid.el.hidden = true;

  fill(root,
    heading('Jobs', h('a', { class: 'button primary', href: '#/jobs/new' }, 'Trigger a job')),
    errors.el, filters, grid.el, empty, pager.el);

  function row(job, context) {
    const idCell = cell('Job', jobLink(job.id, { 'data-focus': `job-${job.id}` }));
    idCell.id = uid('job');
    const reason = job.status === 'Pending' || job.status === 'Failed'
      ? h('div', { class: 'why small' }, why(job, context)) : null;
    return h('tr', {},
      idCell,
      cell('Status', statusBadge(job.status), reason),
      cell('Package', packageName(job) || '—'),
      cell('Robot', target(job)),
      cell('Run at', time(job.run_at)),
      cell('Attempts', String(job.attempts)),
      cell('Updated', time(job.updated_at)),
      cell('Actions', h('div', { class: 'row-actions' }, jobActions(job, ctx, idCell.id))));
  }

  const refresh = refresher(async () => {
    let data;
    try {
      ({ data } = await api(`/api/jobs${query({ ...filter, limit: 50, after: pager.after })}`));
      errors.clear();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      return;
    }
    // The robots of due jobs, for "robot offline since ..."; the suggestions for the filter.
    const now = serverNow();
    const due = data.items.filter((j) => j.status === 'Pending' && j.robot_address && new Date(j.run_at) <= now);
    await ctx.robots.refresh(due.map((j) => j.robot_address), 3000);
    if (!robotList.childElementCount) {
      ctx.robots.suggestions().then((robots) => {
        fill(robotList, robots.map((r) => h('option', { value: r.robot_address }, r.robot_name)));
      }).catch(() => {});
    }
    const pools = await poolsFor(data.items, ctx);
    const contextOf = (job) => ({ robot: ctx.robots.get(job.robot_address), pool: job.pool ? pools.get(job.pool) : undefined });
    const items = data.items;
    if (!items.length) {
      const filtered = filter.status || filter.robot || filter.pool || pager.after !== null;
      fill(empty, filtered
        ? h('p', {}, 'No job matches these filters. ', h('a', { href: '#/jobs' }, 'Clear the filters'), '.')
        : h('p', {}, 'No jobs yet: ', h('a', { href: '#/jobs/new' }, 'trigger a job'), ' for a robot that has connected.'));
    }
    empty.hidden = items.length > 0;
    grid.el.hidden = items.length === 0;
    syncRows(grid.tbody, items, (j) => j.id, (job) => row(job, contextOf(job)),
      (job) => JSON.stringify([job, why(job, contextOf(job)), ctx.caps.retry]));
    pager.update(data.next_after, items.length);
    wakeForDue(items, ctx);
  });
  refresh();

  return {
    refresh,
    onEvent(event) {
      const type = String(event.type || '');
      if (type.startsWith('job.') || type.startsWith('robot.')) ctx.refreshSoon();
    },
  };
}

function detail(root, idText, ctx) {
  const id = Number.parseInt(idText, 10);
  const errors = banner();
  const statusHolder = h('span');
  const actions = h('div', { class: 'view-actions' });
  const reason = h('p', { class: 'callout', 'aria-live': 'polite' });
  const info = h('div', { class: 'panel' });
  const history = table('History', ['At', 'Event', 'From', 'To', 'Reason']);
  const packageBox = h('div');
  const titleId = uid('job-title');

  fill(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Back to the list'), ' / ', String(idText)),
    h('div', { class: 'view-head' }, h('h1', { id: titleId }, `Job ${idText} `, statusHolder), actions),
    errors.el, reason, info, h('h2', {}, 'History'), history.el, h('h2', {}, 'Package'), packageBox);

  let shownStatus = '';
  let robotAddress = '';

  const refresh = refresher(async () => {
    let job;
    try {
      if (!Number.isSafeInteger(id)) throw new ApiError(404, { detail: `no job ${idText}` });
      ({ data: job } = await api(`/api/jobs/${id}`));
      errors.clear();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        fill(info, h('p', { class: 'empty' }, `There is no job ${idText}. `, h('a', { href: '#/jobs' }, 'Back to the list'), '.'));
        reason.hidden = true;
        return;
      }
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      return;
    }
    robotAddress = job.robot_address || '';
    let robot;
    if (job.robot_address && job.status === 'Pending') {
      try {
        robot = await ctx.robots.fetch(job.robot_address);
      } catch (_) {
        robot = ctx.robots.get(job.robot_address);
      }
    }
    const pools = await poolsFor([job], ctx);
    fill(statusHolder, statusBadge(job.status));
    reason.hidden = false;
    reason.className = `callout callout-${job.status.toLowerCase()}`;
    fill(reason, why(job, { robot, pool: job.pool ? pools.get(job.pool) : undefined }));
    wakeForDue([job], ctx);
    if (shownStatus !== job.status || !actions.childElementCount) {
      fill(actions, jobActions(job, ctx, titleId));
      shownStatus = job.status;
    }
    const pkg = job.package && typeof job.package === 'object' ? job.package : {};
    fill(info, facts([
      ['Status', statusBadge(job.status)],
      ['Package name', pkg.package_name || '—'],
      ['Package path', pkg.path ? h('code', {}, String(pkg.path)) : '—'],
      ['Robot', target(job)],
      job.pool !== undefined && job.pool !== null ? ['Pool', job.pool] : null,
      ['Run at', [time(job.run_at), h('span', { class: 'muted' }, ` (${utcText(new Date(job.run_at))})`)]],
      ['Schedule', job.schedule_id ? scheduleLink(job.schedule_id, `schedule ${job.schedule_id}`) : 'none (triggered once)'],
      job.retry_of ? ['Retry of', jobLink(job.retry_of)] : null,
      ['Attempts', String(job.attempts)],
      ['Last error', job.last_error || '—'],
      ['Created', time(job.created_at)],
      ['Updated', time(job.updated_at)],
    ]));
    const events = (job.events || []).map((e, index) => ({ ...e, index }));
    syncRows(history.tbody, events, (e) => e.id || `#${e.index}`, (e) => h('tr', {},
      cell('At', time(e.at)),
      cell('Event', e.type ? h('code', {}, e.type) : '—'),
      cell('From', e.from ? statusBadge(e.from) : h('span', { class: 'muted' }, 'created')),
      cell('To', statusBadge(e.to)),
      cell('Reason', e.reason || '')));
    fill(packageBox, jsonBlock(job.package, 'Package as the robot receives it'));
  });
  refresh();

  return {
    title: `Job ${idText}`,
    refresh,
    onEvent(event) {
      if (event.subject === `jobs/${id}` || (robotAddress && event.subject === `robots/${robotAddress}`)) ctx.refreshSoon();
    },
  };
}

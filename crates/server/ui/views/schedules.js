// Schedules: recurring triggers, their next occurrences in their own time zone, their recent
// instances; delete, and pause/resume where the server has those routes.

import { api, ApiError, query } from '../api.js';
import { h, fill, table, cell, syncRows, time, facts, jsonBlock, badge, uid } from '../dom.js';
import {
  refresher, banner, Pager, heading, jobLink, scheduleLink, statusBadge, packageName, target, act,
} from './common.js';

export function mount(root, where, ctx) {
  if (where.path.length) return detail(root, where.path[0], ctx);
  return list(root, where, ctx);
}

/** active, paused, deleted or ended, in words. */
function stateBadge(schedule) {
  if (schedule.active && schedule.paused) return badge('paused', 'paused');
  if (schedule.active) return badge('active', 'active');
  if (schedule.ended_reason === 'deleted') return badge('deleted', 'deleted');
  return badge('ended', 'ended');
}

/** The schedule's next moments, in its own zone (the UTC value on hover). */
function occurrences(schedule, count) {
  const items = (schedule.next_occurrences || []).slice(0, count);
  if (!items.length) return h('span', { class: 'muted' }, schedule.active ? '—' : 'none (no longer active)');
  return h('ul', { class: 'plain' }, items.map((iso) => h('li', {}, time(iso, { zone: schedule.timezone }))));
}

/** Delete, and Pause or Resume, for a schedule in this state. */
function scheduleActions(schedule, ctx, describedBy) {
  const buttons = [];
  const attrs = (name) => ({ type: 'button', 'aria-describedby': describedBy, 'data-focus': `${name}-${schedule.id}` });
  if (schedule.active && ctx.caps.pause) {
    const paused = Boolean(schedule.paused);
    const toggle = h('button', attrs(paused ? 'resume' : 'pause'), paused ? 'Resume' : 'Pause');
    toggle.addEventListener('click', () => act(toggle, ctx,
      () => api(`/api/schedules/${schedule.id}/${paused ? 'resume' : 'pause'}`, { method: 'POST' }),
      () => `Schedule ${schedule.id} ${paused ? 'resumed' : 'paused'}.`));
    buttons.push(toggle);
  }
  if (schedule.active) {
    const remove = h('button', { ...attrs('delete'), class: 'danger' }, 'Delete');
    remove.addEventListener('click', async () => {
      const sure = await ctx.confirm({
        title: `Delete schedule ${schedule.id}?`,
        text: 'It creates no further jobs, and its pending jobs are cancelled. It stays readable here.',
        yes: 'Delete',
      });
      if (!sure) return;
      await act(remove, ctx,
        () => api(`/api/schedules/${schedule.id}`, { method: 'DELETE' }),
        () => `Schedule ${schedule.id} deleted.`);
    });
    buttons.push(remove);
  }
  return buttons;
}

function list(root, where, ctx) {
  const active = where.params.get('active') || '';
  const errors = banner();
  const show = h('select', { id: uid('show') },
    h('option', { value: '' }, 'All schedules'),
    h('option', { value: 'true' }, 'Active only'),
    h('option', { value: 'false' }, 'Ended and deleted only'));
  show.value = active;
  show.addEventListener('change', () => ctx.navigate(`#/schedules${query({ active: show.value })}`));
  const grid = table('Schedules', ['Schedule', 'Cron', 'Time zone', 'Package', 'Robot', 'State', 'Next occurrences', 'Actions']);
  const empty = h('div', { class: 'empty', hidden: true });
  const pager = new Pager('Schedule pages', () => refresh());
  grid.el.hidden = true;

  fill(root,
    heading('Schedules', h('a', { class: 'button', href: '#/jobs/new?cron=' }, 'New schedule')),
    errors.el,
    h('div', { class: 'filters' }, h('label', { for: show.id }, 'Show'), show),
    grid.el, empty, pager.el);

  function row(schedule) {
    const idCell = cell('Schedule', scheduleLink(schedule.id));
    idCell.id = uid('schedule');
    return h('tr', {},
      idCell,
      cell('Cron', h('code', {}, schedule.cron)),
      cell('Time zone', schedule.timezone),
      cell('Package', packageName(schedule) || '—'),
      cell('Robot', target(schedule)),
      cell('State', stateBadge(schedule)),
      cell('Next occurrences', occurrences(schedule, 3)),
      cell('Actions', h('div', { class: 'row-actions' }, scheduleActions(schedule, ctx, idCell.id))));
  }

  const refresh = refresher(async () => {
    let data;
    try {
      ({ data } = await api(`/api/schedules${query({ active, limit: 50, after: pager.after })}`));
      errors.clear();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      return;
    }
    const items = data.items;
    if (!items.length) {
      fill(empty, active || pager.after !== null
        ? h('p', {}, 'No schedule matches. ', h('a', { href: '#/schedules' }, 'Clear the filter'), '.')
        : h('p', {}, 'No schedules yet: ', h('a', { href: '#/jobs/new?cron=' }, 'create one'), ' with a cron expression such as ', h('code', {}, '0 9 * * MON-FRI'), '.'));
    }
    empty.hidden = items.length > 0;
    grid.el.hidden = items.length === 0;
    syncRows(grid.tbody, items, (s) => s.id, row, (s) => JSON.stringify([s, ctx.caps.pause]));
    pager.update(data.next_after, items.length);
  });
  refresh();

  return {
    refresh,
    onEvent(event) {
      const type = String(event.type || '');
      if (type.startsWith('schedule.') || (type === 'job.created' && event.data && event.data.job && event.data.job.schedule_id)) ctx.refreshSoon();
    },
  };
}

function detail(root, idText, ctx) {
  const id = Number.parseInt(idText, 10);
  const errors = banner();
  const titleId = uid('schedule-title');
  const stateHolder = h('span');
  const actions = h('div', { class: 'view-actions' });
  const info = h('div', { class: 'panel' });
  const upcoming = h('div');
  const instances = table('Instances', ['Job', 'Status', 'Run at', 'Attempts', 'Last error']);
  const instancesEmpty = h('p', { class: 'empty', hidden: true }, 'No instance yet: the first is created at the next occurrence.');
  const history = table('Schedule history', ['At', 'Kind', 'Occurrence', 'Job', 'Reason']);
  const historyEmpty = h('p', { class: 'empty', hidden: true }, 'Nothing has happened to this schedule yet.');
  const packageBox = h('div');
  let shown = '';

  fill(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/schedules' }, 'Back to the list'), ' / ', String(idText)),
    h('div', { class: 'view-head' }, h('h1', { id: titleId }, `Schedule ${idText} `, stateHolder), actions),
    errors.el, info,
    h('h2', {}, 'Next occurrences'), upcoming,
    h('h2', {}, 'Recent instances'), instances.el, instancesEmpty,
    h('h2', {}, 'Events'), history.el, historyEmpty,
    h('h2', {}, 'Package'), packageBox);

  const refresh = refresher(async () => {
    let schedule;
    try {
      if (!Number.isSafeInteger(id)) throw new ApiError(404, { detail: `no schedule ${idText}` });
      ({ data: schedule } = await api(`/api/schedules/${id}`));
      errors.clear();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        fill(info, h('p', { class: 'empty' }, `There is no schedule ${idText}. `, h('a', { href: '#/schedules' }, 'Back to the list'), '.'));
        return;
      }
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      return;
    }
    fill(stateHolder, stateBadge(schedule));
    const state = JSON.stringify([schedule.active, schedule.paused]);
    if (state !== shown) {
      fill(actions, scheduleActions(schedule, ctx, titleId));
      shown = state;
    }
    fill(info, facts([
      ['State', [stateBadge(schedule), schedule.ended_reason ? ` (${schedule.ended_reason})` : '']],
      ['Cron', h('code', {}, schedule.cron)],
      ['Time zone', schedule.timezone],
      ['Robot', target(schedule)],
      ['Package name', packageName(schedule) || '—'],
      schedule.start ? ['Starts', time(schedule.start, { zone: schedule.timezone })] : null,
      schedule.end ? ['Ends', time(schedule.end, { zone: schedule.timezone })] : null,
      ['Last run', time(schedule.last_run_at, { zone: schedule.timezone })],
      ['Created', time(schedule.created_at)],
    ]));
    fill(upcoming, occurrences(schedule, 10));
    const jobs = schedule.instances || [];
    instancesEmpty.hidden = jobs.length > 0;
    instances.el.hidden = !jobs.length;
    syncRows(instances.tbody, jobs, (j) => j.id, (job) => h('tr', {},
      cell('Job', jobLink(job.id)),
      cell('Status', statusBadge(job.status)),
      cell('Run at', time(job.run_at)),
      cell('Attempts', String(job.attempts)),
      cell('Last error', job.last_error || '—')));
    const events = (schedule.events || []).map((e, index) => ({ ...e, index }));
    historyEmpty.hidden = events.length > 0;
    history.el.hidden = !events.length;
    syncRows(history.tbody, events, (e) => e.index, (e) => h('tr', {},
      cell('At', time(e.at)),
      cell('Kind', e.kind),
      cell('Occurrence', e.occurrence ? time(e.occurrence, { zone: schedule.timezone }) : '—'),
      cell('Job', e.job_id ? jobLink(e.job_id) : '—'),
      cell('Reason', e.reason || '')));
    fill(packageBox, jsonBlock(schedule.package, 'Package of every instance'));
  });
  refresh();

  return {
    title: `Schedule ${idText}`,
    refresh,
    onEvent(event) {
      const job = event.data && event.data.job;
      if (event.subject === `schedules/${id}` || (job && job.schedule_id === id)) ctx.refreshSoon();
    },
  };
}

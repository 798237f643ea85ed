// Events: the live feed of events.md (newest first, as they arrive), filterable by type, and
// the stored events page by page (the API lists them oldest first).

import { api, ApiError, query } from '../api.js';
import { h, fill, table, cell, syncRows, time, uid } from '../dom.js';
import { banner, Pager, heading } from './common.js';

/** The catalogue of events.md, for the type suggestions. */
export const TYPES = [
  'job.*', 'job.created', 'job.sent', 'job.succeeded', 'job.failed', 'job.cancelled', 'job.overdue', 'job.requeued',
  'robot.*', 'robot.registered', 'robot.online', 'robot.offline', 'robot.unreachable', 'robot.updated',
  'schedule.*', 'schedule.created', 'schedule.deleted', 'schedule.skipped', 'schedule.paused', 'schedule.resumed',
  'webhook.disabled',
];

/** `job.*, robot.offline` → a predicate on event types. Empty matches everything. */
export function typeMatcher(text) {
  const patterns = text.split(',').map((p) => p.trim()).filter(Boolean);
  if (!patterns.length) return () => true;
  return (type) => patterns.some((p) => (p.endsWith('*') ? String(type).startsWith(p.slice(0, -1)) : type === p));
}

/** Where an event's subject is shown, as a link when the page has a view of it. */
export function subjectLink(subject) {
  const [kind, ...rest] = String(subject || '').split('/');
  const id = rest.join('/');
  const views = { jobs: 'jobs', robots: 'robots', schedules: 'schedules', webhooks: 'webhooks' };
  if (views[kind] && id) return h('a', { href: `#/${views[kind]}/${encodeURIComponent(id)}` }, subject);
  return subject || '—';
}

/** One line about an event: its reason, else the state it left its subject in. */
export function summary(event) {
  const data = event.data || {};
  if (data.reason) return data.reason;
  if (data.job) return `job ${data.job.id} is ${data.job.status}`;
  if (data.robot) return `robot ${data.robot.robot_address} is ${data.robot.online ? 'online' : 'offline'}`;
  if (data.schedule) return `schedule ${data.schedule.id}${data.schedule.active ? '' : ' ended'}`;
  return '';
}

function eventRow(event) {
  return h('tr', {},
    cell('Time', time(event.time)),
    cell('Type', h('code', {}, event.type)),
    cell('Subject', subjectLink(event.subject)),
    cell('Summary', summary(event)),
    cell('Id', h('span', { class: 'muted' }, String(event.id))));
}

export function mount(root, where, ctx) {
  const typeInput = h('input', { id: uid('type'), type: 'text', list: 'event-types', autocomplete: 'off', placeholder: 'job.failed, robot.*', value: where.params.get('type') || '' });
  const types = h('datalist', { id: 'event-types' }, TYPES.map((t) => h('option', { value: t })));
  const filterForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Event filter' },
    h('span', { class: 'filter' }, h('label', { for: typeInput.id }, 'Type'), typeInput, types), h('button', { type: 'submit' }, 'Filter'));
  const body = h('div');
  fill(root, heading('Events'), body);

  let unsubscribe = null;
  let matches = typeMatcher(typeInput.value);

  function unavailable() {
    fill(body, h('section', { class: 'notice', role: 'note' },
      h('p', {}, h('strong', {}, 'No live event feed on this server. '),
        'This view shows the server\'s event stream (GET /api/events), which this server does not offer yet: it answered 404.'),
      h('p', {}, 'Robots, jobs and schedules still update on their own: the page asks the server for them every second instead.')));
  }

  function feed() {
    const errors = banner();
    const grid = table('Events', ['Time', 'Type', 'Subject', 'Summary', 'Id']);
    const empty = h('p', { class: 'empty' });
    const stored = table('Event archive', ['Time', 'Type', 'Subject', 'Summary', 'Id']);
    const storedPager = new Pager('Archive pages', () => loadStored());
    const loadButton = h('button', { type: 'button' }, 'Show the archive');
    stored.el.hidden = true;
    fill(body,
      filterForm, errors.el,
      h('p', { class: 'muted' }, 'Newest first, as they happen, since this page was opened.'),
      grid.el, empty,
      h('h2', {}, 'Event archive'),
      h('p', { class: 'muted' }, 'The server keeps events for a while (its --event-retention); they are listed from the oldest kept.'),
      loadButton, stored.el, storedPager.el);

    function render() {
      const items = ctx.live.recent.filter((e) => matches(e.type));
      grid.el.hidden = !items.length;
      empty.hidden = items.length > 0;
      empty.textContent = ctx.live.recent.length
        ? 'No event of these types since this page was opened.'
        : 'No event yet since this page was opened: they appear here as robots connect and jobs run.';
      syncRows(grid.tbody, items, (e) => e.id, eventRow);
    }

    async function loadStored() {
      try {
        const { data } = await api(`/api/events${query({ type: typeInput.value.replace(/\s+/g, ''), limit: 100, after: storedPager.after })}`);
        errors.clear();
        stored.el.hidden = false;
        syncRows(stored.tbody, data.items || [], (e) => e.id, eventRow);
        storedPager.update(data.next_after, (data.items || []).length);
        loadButton.hidden = true;
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      }
    }
    loadButton.addEventListener('click', () => loadStored());
    filterForm.onsubmit = (event) => {
      event.preventDefault();
      matches = typeMatcher(typeInput.value);
      history.replaceState(null, '', `#/events${query({ type: typeInput.value.trim() })}`);
      render();
      if (!stored.el.hidden) {
        storedPager.reset();
        loadStored();
      }
    };
    render();
    unsubscribe = ctx.live.subscribe(() => render());
    return render;
  }

  let rendered = null;
  let mode = '';
  function show(state) {
    const next = state === 'unavailable' ? 'unavailable' : 'feed';
    if (next === mode) return;
    mode = next;
    if (unsubscribe) unsubscribe();
    unsubscribe = null;
    if (next === 'unavailable') {
      unavailable();
      rendered = null;
    } else {
      rendered = feed();
    }
  }
  show(ctx.live.state);

  return {
    refresh() {
      if (rendered) rendered();
    },
    onLiveState: show,
    onEvent() {},
    unmount() {
      if (unsubscribe) unsubscribe();
    },
  };
}

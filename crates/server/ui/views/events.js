// Events: the live feed of events.md (newest first, as they arrive), filterable by type and
// subject, and the stored events page by page (the API lists them oldest first).

import { api, ApiError, query } from '../api.js';
import { h, fill, table, cell, syncRows, time, uid } from '../dom.js';
import { banner, Pager, heading } from './common.js';

/** The catalogue of events.md, for the type suggestions. */
export const TYPES = [
  'job.*', 'job.created', 'job.sent', 'job.acknowledged', 'job.succeeded', 'job.failed', 'job.cancelled',
  'job.forced', 'job.waiting', 'job.overdue', 'job.requeued',
  'robot.*', 'robot.registered', 'robot.online', 'robot.offline', 'robot.unreachable', 'robot.updated',
  'schedule.*', 'schedule.created', 'schedule.deleted', 'schedule.skipped', 'schedule.ended', 'schedule.paused',
  'schedule.resumed',
  'webhook.*', 'webhook.disabled',
];

/** `job.*, robot.offline` → a predicate on event types. Empty matches everything. */
export function typeMatcher(text) {
  const patterns = text.split(',').map((p) => p.trim()).filter(Boolean);
  if (!patterns.length) return () => true;
  return (type) => patterns.some((p) => (p.endsWith('*') ? String(type).startsWith(p.slice(0, -1)) : type === p));
}

/**
 * `jobs/42, robots/001AFFDB45C2` → a predicate on subjects (as the API's `subject`: whole
 * subjects; robot addresses in any case). Empty matches everything.
 */
export function subjectMatcher(text) {
  const subjects = new Set(text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
  if (!subjects.size) return () => true;
  return (subject) => subjects.has(String(subject || '').toLowerCase());
}

/** Where an event's subject is shown, as a link when the page has a view of it. */
export function subjectLink(subject) {
  const [kind, ...rest] = String(subject || '').split('/');
  const id = rest.join('/');
  const views = { jobs: 'jobs', robots: 'robots', schedules: 'schedules', webhooks: 'webhooks' };
  if (views[kind] && id) return h('a', { href: `#/${views[kind]}/${encodeURIComponent(id)}` }, subject);
  return subject || '—';
}

/** The state an event left its subject in, in a few words. */
export function outcome(event) {
  const data = event.data || {};
  if (data.job) {
    const attempt = data.attempt > 1 ? `, attempt ${data.attempt}` : '';
    return `job ${data.job.id} is ${data.job.status}${attempt}`;
  }
  if (data.robot) return `robot ${data.robot.robot_address} is ${data.robot.online ? 'online' : 'offline'}`;
  if (data.schedule) return `schedule ${data.schedule.id} is ${data.schedule.active ? 'active' : 'no longer active'}`;
  return '';
}

/** The reason as the server gave it; the resulting state when it gave none. */
function reasonCell(event) {
  const data = event.data || {};
  if (data.reason) return cell('Reason', data.reason);
  return cell('Reason', h('span', { class: 'muted' }, outcome(event) || '—'));
}

function eventRow(event) {
  return h('tr', {},
    cell('Time', time(event.time)),
    cell('Type', h('code', {}, event.type)),
    cell('Subject', subjectLink(event.subject)),
    reasonCell(event),
    cell('Id', h('span', { class: 'muted' }, String(event.id))));
}

// Events never change: a row is rebuilt only for a new id.
const byId = (e) => String(e.id);

export function mount(root, where, ctx) {
  const typeInput = h('input', { id: uid('type'), type: 'text', list: 'event-types', autocomplete: 'off', placeholder: 'job.failed, robot.*', value: where.params.get('type') || '' });
  const types = h('datalist', { id: 'event-types' }, TYPES.map((t) => h('option', { value: t })));
  const subjectInput = h('input', { id: uid('subject'), type: 'text', autocomplete: 'off', placeholder: 'jobs/42, robots/001AFFDB45C2', value: where.params.get('subject') || '' });
  const filterForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Event filter' },
    h('span', { class: 'filter' }, h('label', { for: typeInput.id }, 'Type'), typeInput, types),
    h('span', { class: 'filter' }, h('label', { for: subjectInput.id }, 'Subject'), subjectInput),
    h('button', { type: 'submit' }, 'Filter'),
    h('span', { class: 'muted small' }, 'Both take lists separated by commas; job.* matches every job event, jobs/42 is one job.'));
  const body = h('div');
  fill(root, heading('Events'), body);

  let unsubscribe = null;
  let matches = null;
  function setFilter() {
    const byType = typeMatcher(typeInput.value);
    const bySubject = subjectMatcher(subjectInput.value);
    matches = (event) => byType(event.type) && bySubject(event.subject);
  }
  setFilter();
  const filtered = () => Boolean(typeInput.value.trim() || subjectInput.value.trim());

  function unavailable() {
    fill(body, h('section', { class: 'notice', role: 'note' },
      h('p', {}, h('strong', {}, 'No live event feed on this server. '),
        'This view shows the server\'s event stream (GET /api/events), which this server does not offer yet: it answered 404.'),
      h('p', {}, 'Robots, jobs and schedules still update on their own: the page asks the server for them every second instead.')));
  }

  function feed() {
    const errors = banner();
    const grid = table('Events', ['Time', 'Type', 'Subject', 'Reason', 'Id']);
    const empty = h('p', { class: 'empty' });
    const gap = h('p', { class: 'callout', role: 'note', hidden: true },
      'Some events were removed by the server\'s retention before this page could read them: they are missing here, but every view was read again.');
    const stored = table('Event archive', ['Time', 'Type', 'Subject', 'Reason', 'Id']);
    const storedPager = new Pager('Archive pages', () => loadStored());
    const loadButton = h('button', { type: 'button' }, 'Show the archive');
    stored.el.hidden = true;
    fill(body,
      filterForm, errors.el,
      h('p', { class: 'muted' }, 'Newest first, as they happen, since this page was opened (the last 500).'),
      gap, grid.el, empty,
      h('h2', {}, 'Event archive'),
      h('p', { class: 'muted' }, 'The server keeps events for a while (its --event-retention); they are listed from the oldest kept.'),
      loadButton, stored.el, storedPager.el);

    function render() {
      const items = ctx.live.recent.filter(matches);
      grid.el.hidden = !items.length;
      empty.hidden = items.length > 0;
      empty.textContent = ctx.live.recent.length && filtered()
        ? 'No event matching the filter since this page was opened: change the filter, or show the archive below.'
        : 'No event yet since this page was opened: they appear here as robots connect and jobs run. Earlier ones are in the archive below.';
      gap.hidden = !ctx.live.gaps;
      syncRows(grid.tbody, items, byId, eventRow, byId);
    }

    // A burst of events is drawn once.
    let drawing = false;
    function renderSoon() {
      if (drawing) return;
      drawing = true;
      requestAnimationFrame(() => {
        drawing = false;
        render();
      });
    }

    async function loadStored() {
      try {
        const { data } = await api(`/api/events${query({
          type: typeInput.value.replace(/\s+/g, ''),
          subject: subjectInput.value.split(',').map((s) => s.trim()).filter(Boolean).join(','),
          limit: 100,
          after: storedPager.after,
        })}`);
        errors.clear();
        stored.el.hidden = false;
        syncRows(stored.tbody, data.items || [], byId, eventRow, byId);
        storedPager.update(data.next_after, (data.items || []).length);
        loadButton.hidden = true;
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      }
    }
    loadButton.addEventListener('click', () => loadStored());
    filterForm.onsubmit = (event) => {
      event.preventDefault();
      setFilter();
      history.replaceState(null, '', `#/events${query({ type: typeInput.value.trim(), subject: subjectInput.value.trim() })}`);
      render();
      if (!stored.el.hidden) {
        storedPager.reset();
        loadStored();
      }
    };
    render();
    unsubscribe = ctx.live.subscribe(() => renderSoon());
    // `#/events?from=ID` (a webhook delivery's event): the archive from that event on.
    const from = Number.parseInt(where.params.get('from') || '', 10);
    if (Number.isSafeInteger(from) && from > 0) {
      storedPager.after = String(from - 1);
      loadStored().then(() => stored.el.scrollIntoView({ block: 'start' }));
    }
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

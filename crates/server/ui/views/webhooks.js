// Webhooks (events.md): the receivers events are pushed to; add one (its secret is shown
// once), enable a disabled one, delete; each one's recent deliveries.

import { api, ApiError, query } from '../api.js';
import { h, fill, table, cell, syncRows, time, facts, field, setFieldError, badge, uid } from '../dom.js';
import { refresher, banner, Pager, heading, act } from './common.js';
import { TYPES } from './events.js';

function missing(root) {
  fill(root, heading('Webhooks'), h('section', { class: 'notice', role: 'note' },
    h('p', {}, h('strong', {}, 'No webhooks on this server. '),
      'This view manages the server\'s webhooks (GET /api/webhooks), which this server does not offer yet: it answered 404.'),
    h('p', {}, 'Once the server has them, receivers such as a chat channel get failed jobs and unreachable robots pushed to them.')));
  return { refresh() {} };
}

export function mount(root, where, ctx) {
  if (!ctx.caps.webhooks) return missing(root);
  if (where.path.length) return detail(root, where.path[0], ctx);
  return list(root, ctx);
}

function stateBadge(hook) {
  return hook.active ? badge('active', 'active') : badge('disabled', 'disabled');
}

function hookActions(hook, ctx, describedBy) {
  const buttons = [];
  const attrs = (name) => ({ type: 'button', 'aria-describedby': describedBy, 'data-focus': `${name}-${hook.id}` });
  if (!hook.active) {
    const enable = h('button', attrs('enable'), 'Enable');
    enable.addEventListener('click', () => act(enable, ctx,
      () => api(`/api/webhooks/${hook.id}/enable`, { method: 'POST' }),
      () => `Webhook ${hook.id} enabled.`));
    buttons.push(enable);
  }
  const remove = h('button', { ...attrs('delete'), class: 'danger' }, 'Delete');
  remove.addEventListener('click', async () => {
    const sure = await ctx.confirm({
      title: `Delete webhook ${hook.id}?`,
      text: `Events are no longer sent to ${hook.url}.`,
      yes: 'Delete',
    });
    if (!sure) return;
    const done = await act(remove, ctx,
      () => api(`/api/webhooks/${hook.id}`, { method: 'DELETE' }),
      () => `Webhook ${hook.id} deleted.`);
    if (done && location.hash.startsWith(`#/webhooks/${hook.id}`)) ctx.navigate('#/webhooks');
  });
  buttons.push(remove);
  return buttons;
}

function list(root, ctx) {
  const errors = banner();
  const grid = table('Webhooks', ['Webhook', 'URL', 'Types', 'Format', 'Description', 'State', 'Created', 'Actions']);
  const empty = h('div', { class: 'empty', hidden: true },
    h('p', {}, 'No webhooks yet: add one below, for example for job.failed and robot.unreachable to a chat channel\'s incoming webhook.'));
  const pager = new Pager('Webhook pages', () => refresh());
  const secretBox = h('div', { 'aria-live': 'polite' });
  grid.el.hidden = true;

  fill(root, heading('Webhooks'), errors.el, grid.el, empty, pager.el, secretBox, addForm(secretBox, () => refresh()));

  function row(hook) {
    const idCell = cell('Webhook', h('a', { href: `#/webhooks/${hook.id}` }, String(hook.id)));
    idCell.id = uid('hook');
    return h('tr', {},
      idCell,
      cell('URL', h('code', { class: 'url' }, hook.url)),
      cell('Types', (hook.types || []).join(', ')),
      cell('Format', hook.format || 'cloudevents'),
      cell('Description', hook.description || ''),
      cell('State', stateBadge(hook)),
      cell('Created', time(hook.created_at)),
      cell('Actions', h('div', { class: 'row-actions' }, hookActions(hook, ctx, idCell.id))));
  }

  const refresh = refresher(async () => {
    let data;
    try {
      ({ data } = await api(`/api/webhooks${query({ limit: 100, after: pager.after })}`));
      errors.clear();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
      return;
    }
    const items = data.items || [];
    empty.hidden = items.length > 0;
    grid.el.hidden = !items.length;
    syncRows(grid.tbody, items, (w) => w.id, row);
    pager.update(data.next_after, items.length);
  });
  refresh();
  return {
    refresh,
    onEvent(event) {
      if (String(event.type || '').startsWith('webhook.')) ctx.refreshSoon();
    },
  };
}

function addForm(secretBox, after) {
  const url = h('input', { type: 'url', name: 'url', autocomplete: 'off', placeholder: 'https://chat.example/hooks/...' });
  const types = h('input', { type: 'text', name: 'types', autocomplete: 'off', list: 'webhook-types', value: 'job.failed, robot.unreachable' });
  const typeList = h('datalist', { id: 'webhook-types' }, TYPES.map((t) => h('option', { value: t })));
  const description = h('input', { type: 'text', name: 'description', autocomplete: 'off' });
  const format = h('select', { name: 'format' },
    h('option', { value: 'cloudevents' }, 'CloudEvents (the event as JSON)'),
    h('option', { value: 'chat' }, 'Chat ({"text": ...} for Slack, Mattermost, Google Chat)'));
  const formError = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add webhook');
  const form = h('form', { class: 'trigger', novalidate: true, 'aria-label': 'Add a webhook' },
    h('fieldset', {}, h('legend', {}, 'Add a webhook'),
      h('div', { class: 'fields' },
        field('URL', url, { hint: 'http or https; the server POSTs each event here, signed (Standard Webhooks).', wide: true }),
        field('Event types', types, { hint: 'Comma-separated; job.* matches every job event.', wide: true }),
        field('Description', description),
        field('Format', format)),
      typeList),
    formError, h('div', { class: 'actions' }, submit));
  const FIELDS = { url, types, description, format };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const el of Object.values(FIELDS)) setFieldError(el, '');
    formError.replaceChildren();
    const body = {
      url: url.value.trim(),
      types: types.value.split(',').map((t) => t.trim()).filter(Boolean),
      description: description.value.trim(),
      format: format.value,
    };
    submit.disabled = true;
    try {
      const { data } = await api('/api/webhooks', { method: 'POST', body });
      const secret = h('input', { type: 'text', readonly: true, value: data.secret || '', id: uid('secret'), class: 'secret', spellcheck: 'false' });
      const dismiss = h('button', { type: 'button' }, 'I have stored it');
      dismiss.addEventListener('click', () => secretBox.replaceChildren());
      fill(secretBox, h('section', { class: 'panel callout', 'aria-label': 'New webhook secret' },
        h('p', {}, h('strong', {}, `Webhook ${data.id} added. `), 'Its secret is shown only now: store it with the receiver, which checks the signature with it.'),
        h('label', { for: secret.id }, 'Secret'), secret, dismiss));
      secret.focus();
      secret.select();
      url.value = '';
      description.value = '';
      after();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const unplaced = [];
      for (const problem of error.errors) {
        const key = String(problem.field).split(/[.[]/)[0];
        if (FIELDS[key]) setFieldError(FIELDS[key], problem.problem);
        else unplaced.push(`${problem.field}: ${problem.problem}`);
      }
      fill(formError, h('p', {}, h('strong', {}, `${error.problem.title || 'Refused'}: `), error.message),
        unplaced.length ? h('ul', {}, unplaced.map((t) => h('li', {}, t))) : null);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function detail(root, idText, ctx) {
  const errors = banner();
  const titleId = uid('hook-title');
  const actions = h('div', { class: 'view-actions' });
  const info = h('div', { class: 'panel' });
  const deliveries = table('Deliveries', ['Event', 'Attempt', 'At', 'Result', 'Duration']);
  const deliveriesEmpty = h('p', { class: 'empty', hidden: true }, 'Nothing delivered yet: deliveries appear when an event of its types happens.');
  const pager = new Pager('Pages of deliveries', () => refresh());
  let shown = null;
  fill(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/webhooks' }, 'Back to the list'), ' / ', String(idText)),
    h('div', { class: 'view-head' }, h('h1', { id: titleId }, `Webhook ${idText}`), actions),
    errors.el, info, h('h2', {}, 'Recent deliveries'), deliveries.el, deliveriesEmpty, pager.el);

  const refresh = refresher(async () => {
    try {
      const [one, list] = await Promise.all([
        api(`/api/webhooks/${encodeURIComponent(idText)}`),
        api(`/api/webhooks/${encodeURIComponent(idText)}/deliveries${query({ limit: 50, after: pager.after })}`),
      ]);
      errors.clear();
      const hook = one.data;
      if (shown !== hook.active) {
        fill(actions, hookActions(hook, ctx, titleId));
        shown = hook.active;
      }
      fill(info, facts([
        ['State', stateBadge(hook)],
        ['URL', h('code', { class: 'url' }, hook.url)],
        ['Types', (hook.types || []).join(', ')],
        ['Format', hook.format || 'cloudevents'],
        ['Description', hook.description || '—'],
        ['Created', time(hook.created_at)],
      ]));
      const items = (list.data.items || []).map((d, index) => ({ ...d, index }));
      deliveriesEmpty.hidden = items.length > 0;
      deliveries.el.hidden = !items.length;
      syncRows(deliveries.tbody, items, (d) => `${d.event_id}-${d.attempt}-${d.index}`, (d) => h('tr', {},
        cell('Event', String(d.event_id)),
        cell('Attempt', String(d.attempt)),
        cell('At', time(d.at)),
        cell('Result', d.http_status ? badge(`HTTP ${d.http_status}`, d.http_status < 300 ? 'succeeded' : 'failed') : badge(d.error || 'skipped', 'failed')),
        cell('Duration', d.duration_ms === undefined || d.duration_ms === null ? '—' : `${d.duration_ms} ms`)));
      pager.update(list.data.next_after, items.length);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        fill(info, h('p', { class: 'empty' }, `There is no webhook ${idText}. `, h('a', { href: '#/webhooks' }, 'Back to the list'), '.'));
        return;
      }
      if (!(error instanceof ApiError) || error.status !== 401) errors.show(error);
    }
  });
  refresh();
  return { title: `Webhook ${idText}`, refresh };
}

// Webhooks (events.md): the receivers events are pushed to; add one (its secret is shown
// once), enable a disabled one, delete; each one's recent deliveries. Deliveries are not events,
// so a webhook's page asks for them every two seconds while it is shown.

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

/** The state, and for a disabled webhook since when and why. */
function stateText(hook) {
  if (hook.active) return stateBadge(hook);
  return [stateBadge(hook),
    hook.disabled_at ? h('span', { class: 'muted small' }, ' since ', time(hook.disabled_at)) : null,
    hook.disabled_reason ? h('div', { class: 'small' }, hook.disabled_reason) : null];
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
      cell('State', stateText(hook)),
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
    // Only disabling is an event: another operator's additions are asked for now and then.
    pollMs: 10000,
    onEvent(event) {
      if (String(event.type || '').startsWith('webhook.')) ctx.refreshSoon();
    },
  };
}

/** Copies the text of an input, with the clipboard API where the page may use it. */
async function copyText(input) {
  input.focus();
  input.select();
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(input.value);
      return true;
    }
  } catch (_) {
    // Refused (no permission): the older way below.
  }
  try {
    return document.execCommand('copy');
  } catch (_) {
    return false;
  }
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
    const typeList = types.value.split(',').map((t) => t.trim()).filter(Boolean);
    const body = {
      url: url.value.trim(),
      types: typeList,
      description: description.value.trim(),
      format: format.value,
    };
    submit.disabled = true;
    try {
      const { data } = await api('/api/webhooks', { method: 'POST', body });
      const hintId = uid('secret-hint');
      const secret = h('input', {
        type: 'text', readonly: true, value: data.secret || '', id: uid('secret'), class: 'secret',
        spellcheck: 'false', autocomplete: 'off', 'aria-describedby': hintId,
      });
      const copied = h('span', { class: 'muted small', role: 'status' });
      const copy = h('button', { type: 'button' }, 'Copy');
      copy.addEventListener('click', async () => {
        copied.textContent = (await copyText(secret)) ? 'Copied.' : 'Select the secret and copy it (Ctrl+C, or ⌘C).';
      });
      const dismiss = h('button', { type: 'button' }, 'I have stored it');
      dismiss.addEventListener('click', () => {
        secretBox.replaceChildren();
        url.focus();
      });
      fill(secretBox, h('section', { class: 'panel callout secret-box', 'aria-label': 'New webhook secret' },
        h('p', {}, h('strong', {}, `Webhook ${data.id} added. `),
          'Its secret is shown only now and cannot be shown again: store it with the receiver, which checks each delivery\'s signature with it.'),
        h('label', { for: secret.id }, 'Secret'),
        h('div', { class: 'secret-row' }, secret, copy, dismiss),
        h('p', { class: 'hint', id: hintId }, 'Copy it now (the Copy button, or select it and press Ctrl+C or ⌘C); deleting the webhook and adding it again makes a new one.'),
        copied));
      secret.focus();
      secret.select();
      url.value = '';
      description.value = '';
      after();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const unplaced = [];
      const byField = new Map();
      for (const problem of error.errors) {
        const name = String(problem.field);
        const key = name.split(/[.[]/)[0];
        let text = problem.problem;
        // "types[1]" is the second pattern as sent: name it, the operator typed a list.
        const index = /^types\[(\d+)\]/.exec(name);
        if (index && typeList[Number(index[1])] !== undefined) text = `"${typeList[Number(index[1])]}": ${text}`;
        if (FIELDS[key]) byField.set(key, [...(byField.get(key) || []), text]);
        else unplaced.push(name ? `${name}: ${text}` : text);
      }
      for (const [key, texts] of byField) setFieldError(FIELDS[key], texts.join(' '));
      const first = Object.keys(FIELDS).find((key) => byField.has(key));
      if (first) FIELDS[first].focus();
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
  const deliveries = table('Deliveries', ['Event', 'Attempt', 'At', 'Outcome', 'Result', 'Duration']);
  const deliveriesEmpty = h('p', { class: 'empty', hidden: true }, 'Nothing delivered yet: deliveries appear when an event of its types happens.');
  const pager = new Pager('Pages of deliveries', () => refresh());
  let shown = null;
  fill(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/webhooks' }, 'Back to the list'), ' / ', String(idText)),
    h('div', { class: 'view-head' }, h('h1', { id: titleId }, `Webhook ${idText}`), actions),
    errors.el, info, h('h2', {}, 'Recent deliveries'),
    h('p', { class: 'muted' }, 'Newest first. Every failed attempt and every skipped event is listed; of the deliveries that succeeded at the first attempt, at most one a second (the server\'s own economy under many events).'),
    deliveries.el, deliveriesEmpty, pager.el);

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
        ['State', stateText(hook)],
        ['URL', h('code', { class: 'url' }, hook.url)],
        ['Types', (hook.types || []).join(', ')],
        ['Format', hook.format || 'cloudevents'],
        ['Description', hook.description || '—'],
        ['Created', time(hook.created_at)],
      ]));
      const items = list.data.items || [];
      deliveriesEmpty.hidden = items.length > 0;
      deliveries.el.hidden = !items.length;
      syncRows(deliveries.tbody, items, (d) => d.id, (d) => h('tr', {},
        cell('Event', h('a', { href: `#/events?from=${encodeURIComponent(d.event_id)}` }, String(d.event_id))),
        cell('Attempt', d.attempt ? String(d.attempt) : '—'),
        cell('At', time(d.at)),
        cell('Outcome', badge(d.outcome || (d.http_status && d.http_status < 300 ? 'delivered' : 'failed'), OUTCOME_KIND[d.outcome] || 'failed')),
        cell('Result', deliveryResult(d)),
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
  return {
    title: `Webhook ${idText}`,
    refresh,
    pollMs: 2000,
    onEvent(event) {
      if (event.subject === `webhooks/${idText}`) ctx.refreshSoon();
    },
  };
}

const OUTCOME_KIND = { delivered: 'succeeded', failed: 'failed', skipped: 'cancelled' };

/** What the receiver answered, or why there was no answer, or why nothing was sent. */
function deliveryResult(d) {
  if (d.http_status) return `HTTP ${d.http_status}`;
  if (d.error) return ERRORS[d.error] || d.error;
  if (d.outcome === 'skipped') return 'not sent: the webhook was disabled';
  return '—';
}

const ERRORS = {
  timeout: 'no answer within 10 s (timeout)',
  refused: 'connection refused',
  dns: 'the name did not resolve (dns)',
  tls: 'TLS failed',
  address_not_allowed: 'address not allowed',
  connection: 'the connection failed',
};

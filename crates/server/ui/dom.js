// Building the page. Everything that comes from the server (names, messages, package fields)
// goes in as text nodes or attribute values, never as HTML: a robot that calls itself
// "<img onerror=...>" is shown as exactly that.

let counter = 0;

/** A fresh id for label/describedby pairs. */
export function uid(prefix = 'x') {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * h('a', {href: '#/jobs', class: 'x', onclick: fn}, 'text', child, [more])
 * Attributes whose value is null, undefined or false are left out; `true` sets them empty.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'value' && 'value' in el) {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const pad = (n) => String(n).padStart(2, '0');

const formatters = new Map();
function formatter(zone, locale = 'en-US', zoneName = 'short') {
  const key = `${zone || ''}|${locale}|${zoneName}`;
  if (!formatters.has(key)) {
    formatters.set(key, new Intl.DateTimeFormat(locale, {
      timeZone: zone || undefined,
      year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
      hourCycle: 'h23', timeZoneName: zoneName,
    }));
  }
  return formatters.get(key);
}

function partsOf(date, zone, locale, zoneName) {
  const parts = {};
  for (const part of formatter(zone, locale, zoneName).formatToParts(date)) parts[part.type] = part.value;
  return parts;
}

/**
 * "2027-03-28 14:02:05" and the zone's name at that moment, in `zone` (default: the browser's):
 * an abbreviation where one is common (EST, CEST), else the offset (UTC+05:30).
 */
export function formatParts(date, zone) {
  const parts = partsOf(date, zone, 'en-US', 'short');
  let name = parts.timeZoneName || '';
  if (name.startsWith('GMT')) {
    // en-US abbreviates American zones only; British English knows the European ones.
    const british = partsOf(date, zone, 'en-GB', 'short').timeZoneName || '';
    if (british && !british.startsWith('GMT')) name = british;
    else if (!(name === 'GMT' && british === 'GMT')) {
      name = (partsOf(date, zone, 'en-US', 'longOffset').timeZoneName || name).replace('GMT', 'UTC');
    }
  }
  return {
    text: `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`,
    zone: name,
  };
}

export function utcText(date) {
  return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} `
    + `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} UTC`;
}

/**
 * A <time> showing an RFC 3339 moment in the browser's zone (or `zone`, with its name), the UTC
 * value on hover. Null shows a dash.
 */
export function time(iso, { zone, withZone = false } = {}) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h('span', {}, iso);
  const local = formatParts(date, zone);
  const text = zone || withZone ? `${local.text} ${local.zone}` : local.text;
  return h('time', { datetime: iso, title: utcText(date) }, text);
}

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

/** "3 minutes ago", "in 2 hours". */
export function ago(iso, now = Date.now()) {
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const units = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return relative.format(Math.trunc(seconds / size), unit);
  }
  return relative.format(seconds, 'second');
}

/**
 * "3 minutes ago" that stays true: the page rewrites every such text now and then
 * ([`updateAgo`]) without asking the server.
 */
export function agoText(iso, now = Date.now()) {
  return h('span', { 'data-ago': iso }, ago(iso, now));
}

/** Rewrites the texts of [`agoText`] under `root`. */
export function updateAgo(root, now = Date.now()) {
  for (const el of root.querySelectorAll('[data-ago]')) {
    const text = ago(el.dataset.ago, now);
    if (el.textContent !== text) el.textContent = text;
  }
}

/** The browser's own zone name. */
export function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** A status in words and colour (the word carries the meaning; the colour only helps). */
export function badge(text, kind = text) {
  return h('span', { class: `badge badge-${String(kind).toLowerCase()}` }, text);
}

/**
 * A table with a caption (its accessible name; only for assistive technology by default, as
 * every table here sits under a heading that says the same), headings and an empty body.
 */
export function table(name, columns, { captionHidden = true } = {}) {
  const tbody = h('tbody');
  const el = h('table', { class: 'grid' },
    h('caption', { class: captionHidden ? 'visually-hidden' : null }, name),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  return { el, tbody, columns };
}

/** A cell labelled with its column (the phone layout shows the label beside the value). */
export function cell(label, ...children) {
  return h('td', { 'data-label': label }, h('div', { class: 'cell' }, ...children));
}

const signatures = new WeakMap();

/**
 * Brings a table body in line with `items` without rebuilding rows that did not change, so a
 * refresh every second neither flickers nor takes the keyboard focus away. `render(item)`
 * returns a <tr>; elements with `data-focus` keep the focus across a re-render of their row.
 */
export function syncRows(tbody, items, keyOf, render, signature = (item) => JSON.stringify(item)) {
  const active = document.activeElement;
  const focusKey = active && tbody.contains(active) ? active.dataset.focus : undefined;
  const old = new Map();
  for (const row of tbody.rows) old.set(row.dataset.key, row);
  const wanted = items.map((item) => {
    const key = String(keyOf(item));
    const sig = signature(item);
    const existing = old.get(key);
    if (existing && signatures.get(existing) === sig) {
      old.delete(key);
      return existing;
    }
    const row = render(item);
    row.dataset.key = key;
    signatures.set(row, sig);
    return row;
  });
  wanted.forEach((row, index) => {
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] || null);
  });
  for (const row of old.values()) if (row.isConnected) row.remove();
  while (tbody.rows.length > wanted.length) tbody.rows[wanted.length].remove();
  if (focusKey && !tbody.contains(document.activeElement)) {
    const again = tbody.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`);
    if (again) again.focus();
  }
}

/** A labelled form field with a hint and a place for the server's objection. */
export function field(label, input, { hint, wide = false, span = 1 } = {}) {
  const id = input.id || uid('f');
  input.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  const errorEl = h('p', { class: 'field-error', id: `${id}-error` });
  input.setAttribute('aria-describedby', [hintEl && hintEl.id, errorEl.id].filter(Boolean).join(' '));
  const classes = ['field', wide ? 'wide' : '', span > 1 ? `span-${span}` : ''].filter(Boolean).join(' ');
  return h('div', { class: classes },
    h('label', { for: id }, label), input, hintEl, errorEl);
}

/** Shows `message` under the field whose input is `input` (empty clears it). */
export function setFieldError(input, message) {
  const errorEl = document.getElementById(`${input.id}-error`);
  if (errorEl) errorEl.textContent = message || '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

/** A JSON value as indented text. */
export function jsonBlock(value, label) {
  return h('pre', { class: 'json', tabindex: '0', 'aria-label': label }, JSON.stringify(value, null, 2));
}

/** A definition list from [term, value] pairs (values may be nodes). */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([term, value]) => [
    h('dt', {}, term), h('dd', {}, value),
  ]));
}

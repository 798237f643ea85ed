// The trigger form: one job now or at a date and time in a chosen zone, or a recurring
// schedule (cron), for a robot or a pool. The server validates; its objections appear beside
// the fields they concern.

import { api, ApiError, randomKey, serverNow } from '../api.js';
import { h, fill, field, setFieldError, browserZone } from '../dom.js';
import { heading } from './common.js';

let zoneNames = null;
/** The IANA zone names the browser knows, for the time-zone suggestions. */
function zones() {
  if (!zoneNames) {
    let names = [];
    try {
      names = Intl.supportedValuesOf('timeZone');
    } catch (_) {
      names = [];
    }
    zoneNames = names.includes('UTC') ? names : ['UTC', ...names];
  }
  return zoneNames;
}

export function mount(root, where, ctx) {
  const input = (attrs) => h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', ...attrs });
  const name = input({ name: 'package_name', required: true });
  const path = input({ name: 'path', required: true });
  const extra = h('textarea', { name: 'extra', rows: '2', spellcheck: 'false', placeholder: '{"priority": "high"}' });
  const address = input({ name: 'robot_address', list: 'trigger-robots' });
  const robots = h('datalist', { id: 'trigger-robots' });
  const robotName = input({ name: 'robot_name' });
  const pool = ctx.caps.pools ? input({ name: 'pool', list: 'trigger-pools' }) : null;
  const poolList = h('datalist', { id: 'trigger-pools' });
  const runAt = h('input', { type: 'datetime-local', name: 'run_at', step: '1' });
  const zone = input({ name: 'timezone', list: 'trigger-zones', value: browserZone() });
  const zoneList = h('datalist', { id: 'trigger-zones' }, zones().map((z) => h('option', { value: z })));
  const cron = input({ name: 'cron', placeholder: '0 9 * * MON-FRI' });
  const robotStatus = h('p', { class: 'hint', 'aria-live': 'polite' });
  const formError = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Trigger');

  const form = h('form', { class: 'trigger', novalidate: true, 'aria-labelledby': 'trigger-title' },
    h('fieldset', {}, h('legend', {}, 'Package'),
      h('div', { class: 'fields' },
        field('Package name', name, { hint: 'Letters, digits, ".", "_" and "-"; it names a file.' }),
        field('Package path', path, { hint: 'A URL or a relative path.', span: 2 }),
        field('More package fields (JSON, optional)', extra, { hint: 'Kept in the package and delivered to the robot as they are.', wide: true }))),
    h('fieldset', {}, h('legend', {}, 'Robot'),
      h('div', { class: 'fields' },
        field('Robot address', address, { hint: pool ? 'The robot that runs the job; or leave it empty and give a pool.' : 'A robot that has connected at least once.' }),
        field('Robot name', robotName, { hint: 'Filled in from the robot\'s record; you may change it.' }),
        pool ? field('Pool', pool, { hint: 'Any free robot of this pool runs the job.' }) : null),
      robots, poolList, robotStatus),
    h('fieldset', {}, h('legend', {}, 'When'),
      h('div', { class: 'fields' },
        field('Run at', runAt, { hint: 'Empty: now. Otherwise this date and time in the time zone below.' }),
        field('Time zone', zone, { hint: 'An IANA name such as Europe/Berlin; it applies to Run at and to Cron.' }),
        field('Cron', cron, { hint: 'For a recurring schedule instead: 5 fields (minute first) or 6 (seconds first), e.g. 0 9 * * MON-FRI. Leave Run at empty.', span: 2 })),
      zoneList),
    formError,
    h('div', { class: 'actions' }, submit, h('a', { href: '#/jobs' }, 'Back to the list')));

  fill(root, heading('Trigger a job'), form);
  root.querySelector('h1').id = 'trigger-title';
  robotStatus.id = `${address.id}-status`;
  address.setAttribute('aria-describedby', `${address.getAttribute('aria-describedby')} ${robotStatus.id}`);

  // The robot's name follows its address until the operator types a name of their own.
  let nameIsAuto = true;
  robotName.addEventListener('input', () => { nameIsAuto = robotName.value === ''; });
  let lookup = 0;
  let lookupTimer = null;
  async function lookUpRobot() {
    const wanted = address.value.trim();
    const ticket = ++lookup;
    if (!wanted) {
      robotStatus.textContent = '';
      if (nameIsAuto) robotName.value = '';
      return;
    }
    let robot;
    try {
      robot = await ctx.robots.fetch(wanted);
    } catch (_) {
      robot = ctx.robots.get(wanted) || null;
    }
    if (ticket !== lookup) return;
    if (robot) {
      if (nameIsAuto || !robotName.value) {
        robotName.value = robot.robot_name || '';
        nameIsAuto = true;
      }
      robotStatus.textContent = `Known robot ${robot.robot_name || robot.robot_address}, ${robot.online ? 'online' : 'offline'}.`;
    } else {
      if (nameIsAuto) robotName.value = '';
      robotStatus.textContent = 'No robot with this address has connected or been recorded yet.';
    }
  }
  address.addEventListener('input', () => {
    clearTimeout(lookupTimer);
    lookupTimer = setTimeout(lookUpRobot, 200);
  });
  address.addEventListener('change', lookUpRobot);

  ctx.robots.suggestions().then((list) => {
    fill(robots, list.map((r) => h('option', { value: r.robot_address }, `${r.robot_name} (${r.online ? 'online' : 'offline'})`)));
  }).catch(() => {});
  if (pool) {
    api('/api/pools').then(({ data }) => {
      fill(poolList, (data.items || []).map((p) => h('option', { value: p.name })));
    }).catch(() => {});
  }

  const preset = where.params;
  if (preset.get('robot')) {
    address.value = preset.get('robot');
    lookUpRobot();
  }
  if (pool && preset.get('pool')) pool.value = preset.get('pool');
  if (preset.get('cron') !== null) cron.value = preset.get('cron');
  if (preset.get('package_name')) name.value = preset.get('package_name');
  if (preset.get('path')) path.value = preset.get('path');

  const FIELDS = {
    'Package.package_name': name,
    'Package.path': path,
    Package: extra,
    'Robot.robot_address': address,
    'Robot.robot_name': robotName,
    'Robot.pool': pool,
    Robot: address,
    Schedule: runAt,
    'Schedule.date': runAt,
    'Schedule.time': runAt,
    'Schedule.at': runAt,
    'Schedule.timezone': zone,
    'Schedule.cron': cron,
    'Schedule.start': cron,
    'Schedule.end': cron,
  };
  const all = [name, path, extra, address, robotName, pool, runAt, zone, cron].filter(Boolean);

  function clearErrors() {
    for (const el of all) setFieldError(el, '');
    formError.replaceChildren();
  }

  /** The form as the trigger document of http-api.md; null (with the error shown) if it cannot be. */
  function triggerDocument() {
    const pkg = {};
    const extraText = extra.value.trim();
    if (extraText) {
      let parsed;
      try {
        parsed = JSON.parse(extraText);
      } catch (_) {
        parsed = null;
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
        setFieldError(extra, 'This must be a JSON object, such as {"priority": "high"}.');
        return null;
      }
      Object.assign(pkg, parsed);
    }
    pkg.package_name = name.value.trim();
    pkg.path = path.value.trim();
    const robot = {};
    if (address.value.trim()) robot.robot_address = address.value.trim();
    if (robotName.value.trim()) robot.robot_name = robotName.value.trim();
    if (pool && pool.value.trim()) robot.pool = pool.value.trim();
    if (!robot.robot_address && !robot.pool) robot.robot_address = '';
    const schedule = {};
    const zoneName = zone.value.trim();
    if (cron.value.trim()) {
      schedule.cron = cron.value.trim();
      if (zoneName) schedule.timezone = zoneName;
    }
    if (runAt.value) {
      const [date, clock] = runAt.value.split('T');
      schedule.date = date;
      schedule.time = clock;
      if (zoneName) schedule.timezone = zoneName;
    }
    if (!schedule.cron && !schedule.date) {
      // "Now" by the server's clock: the browser's may be off by more than the minute it allows.
      schedule.at = serverNow().toISOString();
    }
    return { Package: pkg, Robot: robot, Schedule: schedule };
  }

  let key = null;
  let keyFor = null;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    const body = triggerDocument();
    if (!body) return;
    // The same form sent again (after a lost answer) keeps its key, so it is not created twice.
    const identity = JSON.stringify({ ...body, Schedule: body.Schedule.at ? { now: true } : body.Schedule });
    if (identity !== keyFor) {
      key = randomKey();
      keyFor = identity;
    }
    submit.disabled = true;
    try {
      const { data, headers } = await api('/api/jobs', { method: 'POST', body, headers: { 'Idempotency-Key': key } });
      keyFor = null;
      const location = headers.get('location') || '';
      if (location.startsWith('/api/schedules/') || (data && data.cron)) {
        ctx.toast(`Schedule ${data.id} created.`);
        ctx.navigate(`#/schedules/${data.id}`);
      } else {
        ctx.toast(`Job ${data.id} created.`);
        ctx.navigate(`#/jobs/${data.id}`);
      }
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showProblem(error);
    } finally {
      if (submit.isConnected) submit.disabled = false;
    }
  });

  function showProblem(error) {
    const unplaced = [];
    let first = null;
    for (const problem of error.errors) {
      const target = FIELDS[problem.field]
        || (String(problem.field).startsWith('Package.') ? extra : null);
      if (target) {
        const existing = document.getElementById(`${target.id}-error`);
        const before = existing && existing.textContent ? `${existing.textContent} ` : '';
        setFieldError(target, `${before}${problem.problem}`);
        if (!first) first = target;
      } else {
        unplaced.push(`${problem.field}: ${problem.problem}`);
      }
    }
    // A robot nobody knows is a 404 without field errors: it still belongs to the address.
    if (error.status === 404 && !error.errors.length && address.value.trim()) {
      setFieldError(address, error.message);
      first = address;
    }
    fill(formError,
      h('p', {}, h('strong', {}, `${error.problem.title || 'Refused'}: `), error.message),
      unplaced.length ? h('ul', {}, unplaced.map((text) => h('li', {}, text))) : null);
    (first || submit).focus();
  }

  return { title: 'Trigger a job' };
}

// Migrations: what `lambdamesh migrate` records in KV under `lambdamesh/migrations/<service>`
// (docs/migrate.md): each migration's steps, its current weight, error rate and p99 per step,
// and the reason it ended, updated as the record changes.

import { h, replace, svcHref, badge, alertBox, showError, fmtPct } from '../dom.js';

const PREFIX = '/v1/kv/lambdamesh/migrations/?recurse';

function decode(b64) {
  const bin = atob(b64 || '');
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

const STATE_CLASS = { running: 'warning', succeeded: 'passing', rolled_back: 'critical', interrupted: 'critical', stopped: 'plain', aborted: 'critical' };

function ms(x) { return typeof x === 'number' ? `${x.toFixed(1)} ms` : '–'; }

function migration(m) {
  const steps = m.Steps || [];
  const state = m.State || 'unknown';
  return h('section.card.migration', { 'data-migration': m.Service, 'aria-label': `Migration of ${m.Service}` },
    h('h2', null, h('a', { href: svcHref(m.Service) }, m.Service), ' → ', h('a', { href: svcHref(m.Target) }, m.Target), ' ',
      badge(state.replace('_', ' '), STATE_CLASS[state] || 'plain')),
    h('p', null, 'Now ', h('strong', { 'data-weight': '' }, `${m.Weight}%`), ` to ${m.Target}`,
      m.LastHealthyWeight !== undefined ? ` (last healthy ${m.LastHealthyWeight}%)` : '',
      m.Interval ? ` · step interval ${m.Interval}` : '',
      m.Thresholds ? ` · limits: error rate ≤ ${fmtPct(m.Thresholds.MaxErrorRate)}, p99 ≤ ${m.Thresholds.MaxP99Ms} ms, ≥ ${m.Thresholds.MinRequests} requests` : ''),
    m.Reason ? h('p.reason', { role: state === 'rolled_back' ? 'alert' : null, 'data-reason': '' },
      state === 'rolled_back' ? 'Rolled back: ' : 'Ended: ', m.Reason) : null,
    h('ol.steps', { 'aria-label': 'Steps' }, steps.map((w, i) => h(`li.${i < m.StepIndex ? 'done' : i === m.StepIndex ? 'current' : 'todo'}`,
      i === m.StepIndex ? { 'aria-current': 'step' } : null, `${w}%`))),
    h('table.list', null,
      h('thead', null, h('tr', null, ['Weight', 'Requests', 'Errors', 'Error rate', 'p99', `${m.Target} error rate`, `${m.Target} p99`, 'Outcome'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, (m.History || []).map((s) => h('tr', { 'data-step': String(s.Weight) },
        h('td', { 'data-label': 'Weight' }, `${s.Weight}%`),
        h('td', { 'data-label': 'Requests' }, String(s.Requests ?? '–')),
        h('td', { 'data-label': 'Errors' }, String(s.Errors ?? '–')),
        h('td', { 'data-label': 'Error rate' }, fmtPct(s.ErrorRate)),
        h('td', { 'data-label': 'p99' }, ms(s.P99Ms)),
        h('td', { 'data-label': 'Target error rate' }, fmtPct(s.TargetErrorRate)),
        h('td', { 'data-label': 'Target p99' }, ms(s.TargetP99Ms)),
        h('td', { 'data-label': 'Outcome' }, badge(s.Outcome || '', s.Outcome === 'rolled_back' ? 'critical' : s.Outcome === 'promoted' ? 'passing' : 'plain')))))),
    h('p.muted', null, `Started ${m.StartedAt || '–'} · updated ${m.UpdatedAt || '–'}`,
      m.Owner ? ` · run by pid ${m.Owner.Pid} on ${m.Owner.Host}` : ''));
}

export function render(main, scope) {
  const err = alertBox();
  const list = h('div', null, h('p.muted', null, 'Loading…'));
  replace(main, h('h1', null, 'Migrations'), err, list);
  scope.watch(PREFIX, (rows) => {
    showError(err, null);
    const out = [];
    for (const r of rows || []) {
      try { out.push(migration(decode(r.Value))); } catch (e) {
        out.push(h('p.error', { role: 'alert' }, `${r.Key}: not a migration record (${e.message})`));
      }
    }
    replace(list, out.length ? out : h('p.muted', null, 'No migration recorded.'));
    main.dataset.loaded = 'migrations';
  }, (e) => {
    if (e.status === 404) {
      replace(list, h('p.muted', null, 'No migration recorded. Start one with `lambdamesh migrate`.'));
      main.dataset.loaded = 'migrations';
    } else showError(err, e);
  });
}

// The services page: every service with its kind (Lambda function with its ARN, region,
// invocation mode and passthrough; gateways; plain), instances and health, filtered as you type.

import { h, replace, field, badge, svcHref, alertBox, showError } from '../dom.js';

export function kindBadges(s) {
  const out = [];
  if (s.Lambda) out.push(badge('λ Lambda function', 'lambda'));
  if (s.Kind === 'terminating-gateway') out.push(badge('terminating gateway', 'gateway'));
  else if (s.Kind === 'mesh-gateway') out.push(badge('mesh gateway', 'gateway'));
  else if (s.Kind === 'ingress-gateway') out.push(badge('ingress gateway', 'gateway'));
  else if (s.Kind === 'api-gateway') out.push(badge('API gateway', 'gateway'));
  if (!out.length) out.push(badge('service', 'plain'));
  if (s.ConnectedWithProxy) out.push(badge('in mesh', 'mesh', 'has a sidecar proxy'));
  if (s.ConnectedWithGateway) out.push(badge('via gateway', 'mesh', 'fronted by a terminating gateway'));
  return out;
}

export function lambdaDetails(l) {
  return h('dl.lambda', null,
    h('dt', null, 'ARN'), h('dd', null, h('code.arn', null, l.ARN)),
    h('dt', null, 'Region'), h('dd', null, l.Region),
    h('dt', null, 'Invocation'), h('dd', null, l.InvocationMode),
    h('dt', null, 'Passthrough'), h('dd', null, l.PayloadPassthrough ? 'yes' : 'no'));
}

export function health(s) {
  const parts = [];
  if (s.ChecksCritical) parts.push(badge(`${s.ChecksCritical} critical`, 'critical'));
  if (s.ChecksWarning) parts.push(badge(`${s.ChecksWarning} warning`, 'warning'));
  if (s.ChecksPassing) parts.push(badge(`${s.ChecksPassing} passing`, 'passing'));
  if (!parts.length) parts.push(h('span.muted', null, 'no checks'));
  return parts;
}

function kindOf(s) {
  if (s.Lambda) return 'lambda';
  if (s.Kind && s.Kind.endsWith('gateway')) return 'gateway';
  return 'plain';
}

export function render(main, scope) {
  const search = h('input', { type: 'search', name: 'search', placeholder: 'name or tag', autocomplete: 'off' });
  const kind = h('select', { name: 'kind' },
    h('option', { value: '' }, 'All kinds'),
    h('option', { value: 'lambda' }, 'Lambda functions'),
    h('option', { value: 'gateway' }, 'Gateways'),
    h('option', { value: 'plain' }, 'Plain services'));
  const count = h('p.muted', { 'aria-live': 'polite' });
  const tbody = h('tbody');
  const err = alertBox();
  let rows = [];
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const k = kind.value;
    const shown = rows.filter((s) => (!k || kindOf(s) === k)
      && (!q || s.Name.toLowerCase().includes(q) || (s.Tags || []).some((t) => t.toLowerCase().includes(q))));
    count.textContent = `${shown.length} of ${rows.length} services`;
    const frag = document.createDocumentFragment();
    for (const s of shown) {
      frag.append(h('tr', { 'data-service': s.Name },
        h('td', { 'data-label': 'Name' }, h('a', { href: svcHref(s.Name) }, s.Name)),
        h('td', { 'data-label': 'Kind' }, h('div.badges', null, kindBadges(s)), s.Lambda ? lambdaDetails(s.Lambda) : null),
        h('td', { 'data-label': 'Instances' }, String(s.InstanceCount)),
        h('td', { 'data-label': 'Health' }, h('div.badges', null, health(s))),
        h('td', { 'data-label': 'Tags' }, h('div.tags', null, (s.Tags || []).map((t) => h('span.tag', null, t))))));
    }
    tbody.replaceChildren(frag);
  };
  search.addEventListener('input', draw);
  kind.addEventListener('change', draw);
  replace(main,
    h('h1', null, 'Services'),
    h('div.filters', { role: 'search' }, field('Search', search), field('Kind', kind)),
    err, count,
    h('table.list.services', null,
      h('thead', null, h('tr', null, ['Name', 'Kind', 'Instances', 'Health', 'Tags'].map((c) => h('th', { scope: 'col' }, c)))),
      tbody));
  scope.watch('/v1/internal/ui/services', (data) => {
    showError(err, null);
    rows = data || [];
    draw();
    if (main.dataset.loaded !== 'services' && !performance.getEntriesByName('services-rendered').length) {
      performance.mark('services-rendered'); // the first full table (docs/benchmarks.md reads it)
    }
    main.dataset.loaded = 'services';
  }, (e) => showError(err, e));
}

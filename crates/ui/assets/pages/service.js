// One service: its instances and checks, upstreams and downstreams as a graph, its routing chain
// (router → splitter → resolver) with the live split weights, the intentions that apply, and
// for a Lambda function its details and the registrator's registration. Every part is its own
// blocking query, so a `config write` shows here without a reload.

import { h, svg, replace, badge, svcHref, alertBox, showError } from '../dom.js';
import { qs } from '../api.js';
import { kindBadges, lambdaDetails } from './services.js';

const enc = encodeURIComponent;

function section(title, id, ...body) {
  return h('section.card', { 'aria-labelledby': id }, h('h2', { id }, title), ...body);
}

/** Downstreams → service → upstreams, drawn as three columns of boxes joined by arrows. */
function topology(name, downs, ups) {
  const rowH = 34;
  const n = Math.max(downs.length, ups.length, 1);
  const height = n * rowH + 20;
  const width = 640;
  const colX = [10, 235, 460];
  const boxW = 170;
  const midY = height / 2;
  const g = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'group', class: 'topology',
    'aria-label': `${downs.length} downstream and ${ups.length} upstream services of ${name}` },
  svg('defs', null, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5,
    markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' }, svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }))));
  const box = (x, y, label, cls, href) => {
    const t = svg('text', { x: x + boxW / 2, y: y + 4, 'text-anchor': 'middle' });
    t.textContent = label.length > 22 ? `${label.slice(0, 21)}…` : label;
    const title = svg('title');
    title.textContent = label;
    const group = svg('g', { class: `node ${cls}` }, title,
      svg('rect', { x, y: y - 13, width: boxW, height: 26, rx: 6 }), t);
    if (!href) return group;
    const a = svg('a', { href });
    a.append(group);
    return a;
  };
  const ys = (k) => Array.from({ length: k }, (_, i) => (height - k * rowH) / 2 + i * rowH + rowH / 2);
  ys(downs.length).forEach((y, i) => {
    g.append(svg('line', { x1: colX[0] + boxW, y1: y, x2: colX[1], y2: midY, class: 'edge', 'marker-end': 'url(#arrow)' }));
    g.append(box(colX[0], y, downs[i], 'down', svcHref(downs[i])));
  });
  ys(ups.length).forEach((y, i) => {
    g.append(svg('line', { x1: colX[1] + boxW, y1: midY, x2: colX[2], y2: y, class: 'edge', 'marker-end': 'url(#arrow)' }));
    g.append(box(colX[2], y, ups[i], 'up', svcHref(ups[i])));
  });
  g.append(box(colX[1], midY, name, 'self'));
  return h('figure.graph', null, g,
    h('figcaption.muted', null, 'Left: who calls it (downstreams). Right: what it calls (upstreams).'));
}

function weightBar(w) {
  return h('span.bar', { 'aria-hidden': 'true' }, h('span.fill', { 'data-w': String(w) }));
}

function sizeBars(root) {
  // Width set through the CSSOM: the policy forbids inline style attributes from markup.
  for (const f of root.querySelectorAll('.fill[data-w]')) f.style.width = `${Math.max(0, Math.min(100, Number(f.dataset.w)))}%`;
}

function chainView(v) {
  const parts = [];
  if (v.Router) {
    parts.push(h('div.stage', null, h('h3', null, 'Router'),
      h('ol', null, (v.Router.Routes || []).map((r) => {
        const m = r.Match && r.Match.HTTP ? JSON.stringify(r.Match.HTTP) : 'any request';
        const d = r.Destination || {};
        return h('li', null, h('code', null, m), ' → ', d.Service || v.Name, d.ServiceSubset ? ` (${d.ServiceSubset})` : '');
      }))));
  }
  if (v.Splitter) {
    parts.push(h('div.stage.splitter', null, h('h3', null, 'Splitter'),
      h('table.splits', null,
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Service'), h('th', { scope: 'col' }, 'Weight'), h('th', { scope: 'col' }, h('span.sr', null, 'Share')))),
        h('tbody', null, (v.Splitter.Splits || []).map((s) => {
          const name = s.Service || v.Name;
          const w = Number(s.Weight || 0);
          return h('tr', { 'data-split': name + (s.ServiceSubset ? `/${s.ServiceSubset}` : '') },
            h('td', null, h('a', { href: svcHref(name) }, name), s.ServiceSubset ? ` (${s.ServiceSubset})` : ''),
            h('td.weight', null, `${w}%`),
            h('td', null, weightBar(w)));
        })))));
  }
  if (v.Resolver) {
    const r = v.Resolver;
    const items = [];
    if (r.DefaultSubset) items.push(h('li', null, 'default subset ', h('code', null, r.DefaultSubset)));
    for (const [k, s] of Object.entries(r.Subsets || {})) items.push(h('li', null, 'subset ', h('code', null, k), ': ', h('code', null, s.Filter || '(all)')));
    if (r.Redirect) items.push(h('li', null, 'redirect to ', r.Redirect.Service || v.Name));
    if (r.Failover) items.push(h('li', null, 'failover: ', JSON.stringify(r.Failover)));
    if (r.ConnectTimeout) items.push(h('li', null, 'connect timeout ', r.ConnectTimeout));
    parts.push(h('div.stage', null, h('h3', null, 'Resolver'), items.length ? h('ul', null, items) : h('p.muted', null, 'defaults')));
  }
  if (!parts.length) parts.push(h('p.muted', null, 'No router, splitter or resolver: requests go to the service itself.'));
  const routes = h('div.stage.compiled', null, h('h3', null, `What proxies are sent (${v.Protocol})`),
    h('ul', null, (v.Routes || []).map((r) => h('li', null,
      h('code', null, r.Match ? JSON.stringify(r.Match) : 'default route'), ' → ',
      r.Destinations.map((d, i) => [i ? ', ' : '', h('span', { 'data-dest': d.Service }, `${d.Service}${d.Subset ? ` (${d.Subset})` : ''} ${d.Weight}%`)])))));
  const chain = h('div.chain', null, parts, routes);
  sizeBars(chain);
  return chain;
}

function instancesView(rows) {
  if (!rows.length) return h('p.muted', null, 'No instances registered.');
  return h('table.list', null,
    h('thead', null, h('tr', null, ['Instance', 'Node', 'Address', 'Status', 'Checks'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, rows.map((r) => {
      const checks = r.Checks || [];
      const worst = checks.some((c) => c.Status === 'critical') ? 'critical'
        : checks.some((c) => c.Status === 'warning') ? 'warning' : 'passing';
      const addr = r.Service.Address || r.Node.Address;
      return h('tr', null,
        h('td', { 'data-label': 'Instance' }, r.Service.ID),
        h('td', { 'data-label': 'Node' }, r.Node.Node),
        h('td', { 'data-label': 'Address' }, `${addr}:${r.Service.Port}`),
        h('td', { 'data-label': 'Status' }, badge(worst, worst)),
        h('td', { 'data-label': 'Checks' }, h('ul.checks', null, checks.map((c) => h('li', null,
          badge(c.Status, c.Status), ' ', c.Name, c.Output ? h('small.muted', null, ` — ${c.Output.slice(0, 200)}`) : null)))));
    })));
}

export function intentionRow(i) {
  const action = i.Action || (i.Permissions && i.Permissions.length ? 'L7 rules' : '');
  return h('tr', null,
    h('td', { 'data-label': 'Source' }, i.SourceName),
    h('td', { 'data-label': 'Destination' }, i.DestinationName),
    h('td', { 'data-label': 'Action' }, badge(action, action === 'deny' ? 'critical' : 'passing')),
    h('td', { 'data-label': 'Precedence' }, String(i.Precedence ?? '')));
}

function intentionsView(list, empty) {
  if (!list.length) return h('p.muted', null, empty);
  return h('table.list', null,
    h('thead', null, h('tr', null, ['Source', 'Destination', 'Action', 'Precedence'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, list.map(intentionRow)));
}

export function render(main, scope, args) {
  const name = args.join('/');
  const title = h('div.title', null, h('h1', null, name));
  const err = alertBox();
  const lambda = h('div');
  const topo = h('div', null, h('p.muted', null, 'Loading…'));
  const chain = h('div', null, h('p.muted', null, 'Loading…'));
  const inst = h('div', null, h('p.muted', null, 'Loading…'));
  const inbound = h('div');
  const outbound = h('div');
  replace(main, h('p', null, h('a', { href: '#/services' }, '← All services')), title, err, lambda,
    section('Topology', 's-topo', topo),
    section('Routing chain', 's-chain', chain),
    section('Instances and checks', 's-inst', inst),
    section('Intentions', 's-int', h('h3', null, `Who may call ${name}`), inbound, h('h3', null, `What ${name} may call`), outbound));
  let exists = null;
  let hasInstances = null;
  const notFound = () => {
    if (exists === false && hasInstances === false) {
      replace(main, h('p', null, h('a', { href: '#/services' }, '← All services')),
        h('h1', null, name), h('p.error', { role: 'alert', 'data-not-found': '' }, `Service "${name}" not found.`));
      main.dataset.loaded = 'service';
    }
  };
  scope.watch(`/v1/internal/ui/service/${enc(name)}`, (v) => {
    showError(err, null);
    exists = v.Exists;
    replace(title, h('h1', null, name), h('div.badges', null, kindBadges({ ...v, ConnectedWithGateway: v.TerminatingGateways.length > 0 })));
    if (v.Lambda) {
      replace(lambda, section('Lambda function', 's-lambda', lambdaDetails(v.Lambda),
        v.Registrator.length
          ? h('p', null, 'Registered by the Lambda registrator on node ', h('code', null, v.Registrator[0].Node),
            ` (catalog index ${v.Registrator[0].ModifyIndex}`,
            v.Defaults && v.Defaults.ModifyIndex ? `, service-defaults index ${v.Defaults.ModifyIndex})` : ')')
          : h('p.muted', null, 'Not managed by the Lambda registrator.'),
        v.TerminatingGateways.length ? h('p', null, 'Invoked through terminating gateway ',
          v.TerminatingGateways.map((g, i) => [i ? ', ' : '', h('a', { href: svcHref(g) }, g)])) : null));
    } else replace(lambda);
    replace(topo, topology(name, v.Downstreams, v.Upstreams));
    replace(chain, chainView(v));
    main.dataset.loaded = 'service';
    notFound();
  }, (e) => showError(err, e));
  scope.watch(`/v1/health/service/${enc(name)}`, (rows) => {
    hasInstances = (rows || []).length > 0;
    replace(inst, instancesView(rows || []));
    notFound();
  }, (e) => replace(inst, h('p.error', { role: 'alert' }, `${e.status}: ${e.message}`)));
  scope.watch(`/v1/connect/intentions/match${qs({ by: 'destination', name })}`, (m) => {
    replace(inbound, intentionsView((m && m[name]) || [], 'No intention names it: the default policy decides.'));
  }, (e) => replace(inbound, h('p.error', { role: 'alert' }, `${e.status}: ${e.message}`)));
  scope.watch(`/v1/connect/intentions/match${qs({ by: 'source', name })}`, (m) => {
    replace(outbound, intentionsView((m && m[name]) || [], 'No intention names it as a source.'));
  }, (e) => replace(outbound, h('p.error', { role: 'alert' }, `${e.status}: ${e.message}`)));
}

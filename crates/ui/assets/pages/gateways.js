// Gateways: which services each terminating gateway fronts (its config entry, and whether each
// is a Lambda function), and what each mesh gateway links: its datacenter and its LAN/WAN
// addresses (a single-datacenter control plane links only its own).

import { h, replace, svcHref, badge, alertBox, showError } from '../dom.js';
import { get } from '../api.js';
import { health } from './services.js';

const enc = encodeURIComponent;

export function render(main, scope) {
  const err = alertBox();
  const term = h('div', null, h('p.muted', null, 'Loading…'));
  const mesh = h('div', null, h('p.muted', null, 'Loading…'));
  replace(main, h('h1', null, 'Gateways'), err,
    h('section.card', { 'aria-labelledby': 'g-term' }, h('h2', { id: 'g-term' }, 'Terminating gateways'), term),
    h('section.card', { 'aria-labelledby': 'g-mesh' }, h('h2', { id: 'g-mesh' }, 'Mesh gateways'), mesh));
  let services = [];
  let entries = [];
  let dcs = [];
  const meshRows = new Map();
  const meshWatched = new Set();
  get('/v1/catalog/datacenters', scope.signal).then(({ data }) => { dcs = data || []; drawMesh(); }).catch(() => {});
  const byName = () => new Map(services.map((s) => [s.Name, s]));
  const drawTerm = () => {
    const all = byName();
    const gws = services.filter((s) => s.Kind === 'terminating-gateway').map((s) => s.Name);
    for (const e of entries) if (!gws.includes(e.Name)) gws.push(e.Name);
    if (!gws.length) { replace(term, h('p.muted', null, 'No terminating gateway.')); return; }
    replace(term, gws.map((g) => {
      const entry = entries.find((e) => e.Name === g);
      const gw = all.get(g);
      const linked = (entry && entry.Services) || [];
      return h('div.gateway', { 'data-gateway': g },
        h('h3', null, h('a', { href: svcHref(g) }, g), ' ', gw ? h('span.badges', null, health(gw)) : badge('not registered', 'warning')),
        linked.length
          ? h('ul', null, linked.map((l) => {
            const s = all.get(l.Name);
            return h('li', { 'data-fronts': l.Name }, l.Name === '*' ? 'every service (*)' : h('a', { href: svcHref(l.Name) }, l.Name),
              s && s.Lambda ? [' ', badge('λ Lambda function', 'lambda'), ' ', h('code.arn', null, s.Lambda.ARN)] : null,
              l.SNI ? h('small.muted', null, ` SNI ${l.SNI}`) : null);
          }))
          : h('p.muted', null, 'Its terminating-gateway entry links no service.'));
    }));
  };
  const drawMesh = () => {
    const gws = services.filter((s) => s.Kind === 'mesh-gateway');
    if (!gws.length) { replace(mesh, h('p.muted', null, 'No mesh gateway.')); return; }
    for (const g of gws) {
      if (meshWatched.has(g.Name)) continue;
      meshWatched.add(g.Name);
      scope.watch(`/v1/health/service/${enc(g.Name)}`, (rows) => { meshRows.set(g.Name, rows || []); drawMesh(); });
    }
    replace(mesh, gws.map((g) => h('div.gateway', { 'data-gateway': g.Name },
      h('h3', null, h('a', { href: svcHref(g.Name) }, g.Name), ' ', h('span.badges', null, health(g))),
      h('p', null, 'Datacenter ', h('strong', null, g.Datacenter),
        dcs.length > 1 ? ` — links ${dcs.filter((d) => d !== g.Datacenter).join(', ')}` : ' — links callers outside the mesh (Lambda functions) into this datacenter; no other datacenter is federated'),
      h('ul', null, (meshRows.get(g.Name) || []).map((r) => {
        const ta = r.Service.TaggedAddresses || {};
        const addr = (k) => (ta[k] ? `${ta[k].Address}:${ta[k].Port}` : null);
        return h('li', null, h('code', null, r.Service.ID), ` on ${r.Node.Node}: `,
          `${r.Service.Address || r.Node.Address}:${r.Service.Port}`,
          addr('lan') ? ` · LAN ${addr('lan')}` : '', addr('wan') ? ` · WAN ${addr('wan')}` : '');
      })))));
  };
  scope.watch('/v1/internal/ui/services', (data) => {
    showError(err, null);
    services = data || [];
    drawTerm(); drawMesh();
    main.dataset.loaded = 'gateways';
  }, (e) => showError(err, e));
  scope.watch('/v1/config/terminating-gateway', (data) => { entries = data || []; drawTerm(); },
    (e) => showError(err, e));
}

// The page's router: `#/<page>/<args>` picks a page module; leaving a page closes its watches.

import { h, replace } from './dom.js';
import { Scope } from './live.js';
import { get, token } from './api.js';
import * as services from './pages/services.js';
import * as service from './pages/service.js';
import * as intentions from './pages/intentions.js';
import * as config from './pages/config.js';
import * as gateways from './pages/gateways.js';
import * as migrations from './pages/migrations.js';
import * as login from './pages/login.js';

const pages = { services, intentions, config, gateways, migrations, login };

let scope = null;

function parse() {
  const raw = location.hash.replace(/^#\/?/, '');
  const parts = raw.split('/').filter((p) => p !== '').map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return parts.length ? parts : ['services'];
}

function route() {
  if (scope) scope.close();
  scope = new Scope();
  const [name, ...args] = parse();
  const main = document.getElementById('main');
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  let page = pages[name];
  if (name === 'services' && args.length) page = service;
  if (!page) {
    replace(main, h('h1', null, 'Not found'), h('p', null, `There is no page "${name}".`));
    return;
  }
  try {
    page.render(main, scope, args);
  } catch (e) {
    replace(main, h('h1', null, 'This page failed'), h('p.error', { role: 'alert' }, String(e.message || e)));
  }
}

/** The header's token indicator. */
async function who() {
  const el = document.getElementById('who');
  if (!token()) { el.textContent = 'Log in'; return; }
  try {
    const { data } = await get('/v1/acl/token/self');
    el.textContent = `Token: ${data.Description || data.AccessorID.slice(0, 8)}`;
  } catch {
    el.textContent = 'Token (not valid)';
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('lambdamesh-token', () => { who(); route(); });
route();
who();

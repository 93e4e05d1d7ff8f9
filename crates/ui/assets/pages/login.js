// Token login: the token is kept in this browser (localStorage) and sent as X-Consul-Token on
// every request, so the UI can do exactly what the API lets the token do.

import { h, replace, field, alertBox, showError } from '../dom.js';
import { get, token, setToken } from '../api.js';

export function render(main, scope) {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', value: token() });
  const err = alertBox();
  const info = h('div.card');
  const save = async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    showError(err, null);
    setToken(t);
  };
  const logout = () => { input.value = ''; setToken(''); };
  const form = h('form.stack', { onsubmit: save },
    field('ACL token (SecretID)', input, 'Kept in this browser only. Leave empty to use the anonymous token.'),
    h('div.row', null, h('button', { type: 'submit' }, 'Use token'),
      h('button.secondary', { type: 'button', onclick: logout }, 'Log out')),
    err);
  replace(main, h('h1', null, 'Token'), form, info);
  if (!token()) { replace(info, h('p', null, 'No token: requests use the anonymous token.')); return; }
  get('/v1/acl/token/self', scope.signal).then(({ data }) => {
    replace(info,
      h('p', null, 'Logged in as ', h('strong', null, data.Description || '(no description)')),
      h('p', null, 'Accessor ', h('code', null, data.AccessorID)),
      h('p', null, 'Policies: ', (data.Policies || []).map((p) => p.Name).join(', ') || 'none'));
  }).catch((e) => showError(err, e));
}

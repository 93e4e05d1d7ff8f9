// Intentions: the list in precedence order (the API's own order), create/edit/delete through the
// exact-match API (so every error is the API's message), and "can A call B?".

import { h, replace, field, alertBox, showError, badge } from '../dom.js';
import { put, del, get, qs, authorize } from '../api.js';

export function render(main, scope) {
  const err = alertBox();
  const tbody = h('tbody');
  const src = h('input', { name: 'source', required: true, autocomplete: 'off', placeholder: 'web or *' });
  const dst = h('input', { name: 'destination', required: true, autocomplete: 'off', placeholder: 'db or *' });
  const action = h('select', { name: 'action' }, h('option', { value: 'allow' }, 'allow'), h('option', { value: 'deny' }, 'deny'));
  const desc = h('input', { name: 'description', autocomplete: 'off' });
  const save = h('button', { type: 'submit' }, 'Save intention');
  const formErr = alertBox();
  const saved = h('p.muted', { role: 'status' });
  let canWrite = new Map();

  const refreshWrite = async () => {
    const d = dst.value.trim();
    const [ok] = await authorize([{ Resource: 'intention', Segment: d || '*', Access: 'write' }]);
    save.disabled = !ok;
    save.title = ok ? '' : 'Your token may not write intentions for this destination';
  };
  dst.addEventListener('input', refreshWrite);
  refreshWrite();

  const submit = async (ev) => {
    ev.preventDefault();
    showError(formErr, null);
    saved.textContent = '';
    try {
      const body = { Action: action.value };
      if (desc.value) body.Description = desc.value;
      await put(`/v1/connect/intentions/exact${qs({ source: src.value.trim(), destination: dst.value.trim() })}`, body);
      saved.textContent = `Saved: ${src.value.trim()} → ${dst.value.trim()} ${action.value}`;
    } catch (e) { showError(formErr, e); }
  };
  const form = h('form.card.stack', { onsubmit: submit, 'aria-labelledby': 'h-new' },
    h('h2', { id: 'h-new' }, 'Create or edit'),
    h('div.row', null, field('Source', src), field('Destination', dst), field('Action', action), field('Description', desc)),
    h('div.row', null, save), formErr, saved);

  const cSrc = h('input', { name: 'check-source', autocomplete: 'off' });
  const cDst = h('input', { name: 'check-destination', autocomplete: 'off' });
  const cOut = h('p', { role: 'status', 'aria-live': 'polite', class: 'answer' });
  const cErr = alertBox();
  const check = async (ev) => {
    ev.preventDefault();
    showError(cErr, null);
    cOut.textContent = '';
    try {
      const { data } = await get(`/v1/connect/intentions/check${qs({ source: cSrc.value.trim(), destination: cDst.value.trim() })}`);
      replace(cOut, `${cSrc.value.trim()} → ${cDst.value.trim()}: `,
        data.Allowed ? badge('allowed', 'passing') : badge('denied', 'critical'));
    } catch (e) { showError(cErr, e); }
  };
  const checkForm = h('form.card.stack', { onsubmit: check, 'aria-labelledby': 'h-check' },
    h('h2', { id: 'h-check' }, 'Can A call B?'),
    h('div.row', null, field('Source', cSrc), field('Destination', cDst), h('button', { type: 'submit' }, 'Check')),
    cErr, cOut);

  const edit = (i) => {
    src.value = i.SourceName;
    dst.value = i.DestinationName;
    action.value = i.Action === 'deny' ? 'deny' : 'allow';
    desc.value = i.Description || '';
    refreshWrite();
    src.focus();
  };
  const remove = async (i) => {
    showError(err, null);
    try {
      await del(`/v1/connect/intentions/exact${qs({ source: i.SourceName, destination: i.DestinationName })}`);
    } catch (e) { showError(err, e); }
  };

  replace(main, h('h1', null, 'Intentions'), form, checkForm, err,
    h('table.list.intentions', null,
      h('thead', null, h('tr', null, ['Source', 'Destination', 'Action', 'Description', 'Precedence', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
      tbody));

  scope.watch('/v1/connect/intentions', async (list) => {
    showError(err, null);
    list = list || [];
    const dests = [...new Set(list.map((i) => i.DestinationName))];
    const allowed = await authorize(dests.map((d) => ({ Resource: 'intention', Segment: d, Access: 'write' })));
    canWrite = new Map(dests.map((d, k) => [d, allowed[k]]));
    tbody.replaceChildren(...list.map((i) => {
      const w = canWrite.get(i.DestinationName);
      const action = i.Action || 'L7 rules';
      // An L7 intention (Permissions) is edited as its service-intentions entry: the form's
      // single action would replace its rules.
      const l7 = !i.Action;
      return h('tr', { 'data-intention': `${i.SourceName}>${i.DestinationName}` },
        h('td', { 'data-label': 'Source' }, i.SourceName),
        h('td', { 'data-label': 'Destination' }, i.DestinationName),
        h('td', { 'data-label': 'Action' }, badge(action, action === 'deny' ? 'critical' : 'passing')),
        h('td', { 'data-label': 'Description' }, i.Description || ''),
        h('td', { 'data-label': 'Precedence' }, String(i.Precedence ?? '')),
        h('td', { 'data-label': 'Actions' }, h('div.row', null,
          l7
            ? h('a', { href: `#/config/service-intentions/${encodeURIComponent(i.DestinationName)}`, 'aria-label': `Edit the rules of ${i.SourceName} to ${i.DestinationName}` }, 'Edit rules')
            : h('button.secondary', { type: 'button', onclick: () => edit(i), disabled: !w, 'aria-label': `Edit ${i.SourceName} to ${i.DestinationName}` }, 'Edit'),
          h('button.danger', { type: 'button', onclick: () => remove(i), disabled: !w, 'aria-label': `Delete ${i.SourceName} to ${i.DestinationName}` }, 'Delete'))));
    }));
    if (!list.length) tbody.append(h('tr', null, h('td', { colspan: 6 }, 'No intentions.')));
    main.dataset.loaded = 'intentions';
  }, (e) => showError(err, e));
}

// Config entries: every kind's entries, and an editor that shows an entry as JSON and saves it
// through `PUT /v1/config`, the validation error shown in place (the API's own message).

import { h, replace, field, alertBox, showError, link } from '../dom.js';
import { put, del, post, authorize } from '../api.js';

/** The editor's text as a JSON entry: JSON as is, HCL decoded by the server (as
 *  `lambdamesh config write` decodes a file); a decode error is the server's message. */
async function toJson(text) {
  if (text.trim().startsWith('{')) return text;
  const { data } = await post('/v1/internal/ui/config/decode', text);
  return JSON.stringify(data);
}

export const KINDS = ['service-defaults', 'proxy-defaults', 'service-router', 'service-splitter',
  'service-resolver', 'service-intentions', 'terminating-gateway', 'mesh'];

const enc = encodeURIComponent;

function writeCheck(kind, name) {
  if (kind === 'service-intentions') return { Resource: 'intention', Segment: name, Access: 'write' };
  if (['proxy-defaults', 'mesh', 'terminating-gateway'].includes(kind)) return { Resource: 'operator', Segment: '', Access: 'write' };
  return { Resource: 'service', Segment: name, Access: 'write' };
}

function listPage(main, scope) {
  const bodies = new Map(KINDS.map((k) => [k, h('div', null, h('p.muted', null, 'Loading…'))]));
  const err = alertBox();
  replace(main, h('h1', null, 'Config entries'),
    h('p', null, link('#/config/new', 'New config entry')), err,
    h('div.grid', null, KINDS.map((kind) => h('section.card', { 'aria-labelledby': `k-${kind}` },
      h('h2', { id: `k-${kind}` }, kind), bodies.get(kind)))));
  // One blocking query for every kind (a browser holds six connections per host).
  scope.watch('/v1/internal/ui/config', (list) => {
    showError(err, null);
    for (const kind of KINDS) {
      const mine = (list || []).filter((e) => e.Kind === kind);
      replace(bodies.get(kind), mine.length
        ? h('ul.entries', null, mine.map((e) => h('li', { 'data-entry': `${kind}/${e.Name}` },
          link(`#/config/${enc(kind)}/${enc(e.Name)}`, e.Name), h('small.muted', null, ` index ${e.ModifyIndex}`))))
        : h('p.muted', null, 'none'));
    }
    main.dataset.loaded = 'config';
  }, (e) => showError(err, e));
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;

function hclString(v) {
  // HCL 2 templates: `${` and `%{` start interpolation, so they are doubled.
  return JSON.stringify(v).replaceAll('${', '$${').replaceAll('%{', '%%{');
}

/** A JSON value as HCL (what `config write` reads back to the same entry). */
export function toHcl(v, pad = '') {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return hclString(v);
  if (typeof v !== 'object') return String(v);
  const inner = `${pad}  `;
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    return `[\n${v.map((x) => `${inner}${toHcl(x, inner)},`).join('\n')}\n${pad}]`;
  }
  const keys = Object.keys(v).filter((k) => v[k] !== null && v[k] !== undefined);
  if (!keys.length) return '{}';
  return `{\n${keys.map((k) => `${inner}${IDENT.test(k) ? k : JSON.stringify(k)} = ${toHcl(v[k], inner)}`).join('\n')}\n${pad}}`;
}

/** A whole entry as HCL: its top-level fields as attributes. */
function entryHcl(v) {
  return Object.keys(v).filter((k) => v[k] !== null && v[k] !== undefined)
    .map((k) => `${IDENT.test(k) ? k : JSON.stringify(k)} = ${toHcl(v[k])}`).join('\n') + '\n';
}

function editor(main, scope, kind, name) {
  const isNew = !kind;
  const text = h('textarea', { name: 'entry', rows: 22, spellcheck: 'false', 'aria-describedby': 'entry-err' });
  const err = alertBox();
  err.id = 'entry-err';
  const status = h('p.muted', { role: 'status' });
  const save = h('button', { type: 'submit' }, 'Save');
  const format = h('select', { name: 'format' }, h('option', { value: 'json' }, 'JSON'), h('option', { value: 'hcl' }, 'HCL'));
  const remove = h('button.danger', { type: 'button', hidden: isNew }, 'Delete');
  let dirty = false;
  // The ModifyIndex the editor's text came from: a save is a check-and-set on it, so a change
  // made elsewhere meanwhile is never silently overwritten.
  let loadedIndex = 0;
  text.addEventListener('input', () => { dirty = true; });
  const check = async () => {
    let k = kind; let n = name;
    if (isNew) {
      try {
        const v = JSON.parse(await toJson(text.value));
        k = v.Kind || v.kind; n = v.Name || v.name;
      } catch { return; }
    }
    if (!k) return;
    const [ok] = await authorize([writeCheck(k, n || '')]);
    save.disabled = !ok;
    remove.disabled = !ok;
    save.title = ok ? '' : 'Your token may not write this entry';
  };
  const submit = async (ev) => {
    ev.preventDefault();
    showError(err, null);
    status.textContent = '';
    try {
      const body = await toJson(text.value);
      const sameEntry = (() => {
        try { const v = JSON.parse(body); return (v.Kind || v.kind) === kind && (v.Name || v.name) === name; } catch { return false; }
      })();
      const cas = !isNew && sameEntry && loadedIndex ? `?cas=${loadedIndex}` : '';
      const { data } = await put(`/v1/config${cas}`, body);
      if (data === false) {
        showError(err, { message: 'Not saved: the entry was changed by someone else since you loaded it. Copy your text, reload the page and apply your change again.' });
        return;
      }
      dirty = false;
      status.textContent = 'Saved.';
      if (isNew) {
        const v = JSON.parse(body);
        location.hash = `#/config/${enc(v.Kind || v.kind)}/${enc(v.Name || v.name)}`;
      }
    } catch (e) { showError(err, e); text.setAttribute('aria-invalid', 'true'); }
  };
  remove.addEventListener('click', async () => {
    showError(err, null);
    try {
      await del(`/v1/config/${enc(kind)}/${enc(name)}`);
      location.hash = '#/config';
    } catch (e) { showError(err, e); }
  });
  let timer;
  text.addEventListener('input', () => {
    text.removeAttribute('aria-invalid');
    if (isNew) { clearTimeout(timer); timer = setTimeout(check, 300); }
  });
  const title = isNew ? 'New config entry' : `${kind} / ${name}`;
  // Switching the format rewrites the text: JSON → HCL here, HCL → JSON by the server's decoder.
  format.addEventListener('change', async () => {
    showError(err, null);
    try {
      const v = JSON.parse(await toJson(text.value));
      text.value = format.value === 'hcl' ? entryHcl(v) : JSON.stringify(v, null, 2);
    } catch (e) {
      showError(err, e);
      format.value = format.value === 'hcl' ? 'json' : 'hcl';
    }
  });
  const form = h('form.stack', { onsubmit: submit }, field('Format', format),
    field('Entry (JSON or HCL)', text, 'Consul\'s JSON or HCL, as `config write` takes; the server validates it and answers with what is wrong.'),
    err, h('div.row', null, save, remove), status);
  replace(main, h('p', null, link('#/config', '← All config entries')), h('h1', null, title), form);
  if (isNew) {
    text.value = JSON.stringify({ Kind: 'service-defaults', Name: 'example', Protocol: 'http' }, null, 2);
    check();
    main.dataset.loaded = 'config-edit';
    return;
  }
  check();
  scope.watch(`/v1/config/${enc(kind)}/${enc(name)}`, (v) => {
    const shown = { ...v };
    delete shown.CreateIndex;
    delete shown.ModifyIndex;
    if (!dirty) {
      loadedIndex = v.ModifyIndex;
      text.value = format.value === 'hcl' ? entryHcl(shown) : JSON.stringify(shown, null, 2);
      status.textContent = `Index ${v.ModifyIndex}.`;
    } else {
      status.textContent = `Changed on the server (index ${v.ModifyIndex}) while you edit: saving is refused; reload to see the change.`;
    }
    form.hidden = false;
    main.dataset.loaded = 'config-edit';
  }, (e) => {
    if (e.status === 404) {
      replace(main, h('p', null, link('#/config', '← All config entries')), h('h1', null, title),
        h('p.error', { role: 'alert', 'data-not-found': '' }, `Not found: ${e.message}`));
      main.dataset.loaded = 'config-edit';
    } else showError(err, e);
  });
}

export function render(main, scope, args) {
  if (args[0] === 'new') return editor(main, scope, null, null);
  if (args.length >= 2) return editor(main, scope, args[0], args.slice(1).join('/'));
  return listPage(main, scope);
}

// Building DOM without markup strings: every name and value the UI shows becomes a text node,
// so a service called `<script>` is shown as those characters and never parsed as HTML.

/** h('tag.class', {attr: value, onclick: fn}, ...children): an element. Children may be
 *  strings or numbers (text nodes), elements, arrays of those, or null/undefined/false (skipped). */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
/** An SVG element, attributes set one by one. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A labelled input: the label's `for` names the input, so screen readers and tests find it. */
let seq = 0;
export function field(label, input, hint) {
  if (!input.id) input.id = `f${++seq}`;
  return h('div.field', null, h('label', { for: input.id }, label), input,
    hint ? h('small.hint', null, hint) : null);
}

/** An alert region for a form's error (the API's own message). */
export function alertBox() {
  return h('p.error', { role: 'alert', hidden: true });
}
export function showError(box, err) {
  if (!err) { box.hidden = true; box.textContent = ''; return; }
  box.hidden = false;
  box.textContent = err.status ? `${err.status}: ${err.message}` : String(err.message || err);
}

export function badge(text, kind, title) {
  return h(`span.badge.${kind || 'plain'}`, title ? { title } : null, text);
}

export function link(href, ...children) {
  return h('a', { href }, ...children);
}

export function svcHref(name) {
  return `#/services/${encodeURIComponent(name)}`;
}

export function fmtPct(x) {
  if (x === undefined || x === null || Number.isNaN(x)) return '–';
  return `${(x * 100).toFixed(1)}%`;
}

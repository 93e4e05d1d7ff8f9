// Live pages: a watch is a loop of blocking queries on one resource. The first answer comes at
// once; each later one when the resource changes (Consul's `?index=`). A failed request backs
// off (1 s doubling to 10 s) and the banner says the connection is lost until one succeeds.

import { get, ApiError } from './api.js';

const failing = new Set();
let banner;

function showBanner() {
  banner ||= document.getElementById('banner');
  if (!banner) return;
  if (failing.size) {
    banner.hidden = false;
    banner.textContent = 'Connection to the server lost, retrying…';
  } else {
    banner.hidden = true;
    banner.textContent = '';
  }
}

/** A set of watches that end together when the page is left. */
export class Scope {
  constructor() {
    this.ctrl = new AbortController();
    this.timers = new Set();
  }
  get signal() { return this.ctrl.signal; }
  get closed() { return this.ctrl.signal.aborted; }

  /** Calls onData(data, index) with the first answer and on every change; onError(err) on a
   *  4xx (the API's answer, not retried until the resource changes). */
  watch(path, onData, onError) {
    const me = {};
    const sep = path.includes('?') ? '&' : '?';
    let index = 0;
    let delay = 1000;
    const loop = async () => {
      while (!this.closed) {
        const url = index ? `${path}${sep}index=${index}&wait=60s` : path;
        try {
          const { data, index: next } = await get(url, this.signal);
          if (failing.delete(me)) showBanner();
          delay = 1000;
          // An index that goes back (a restored server) restarts the watch from the top.
          const changed = !index || next !== index;
          index = next > 0 && next >= index ? next : 0;
          if (changed && !this.closed) onData(data, next);
          if (!index) await this.sleep(1000);
        } catch (e) {
          if (this.closed || e.name === 'AbortError') return;
          if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
            if (failing.delete(me)) showBanner();
            if (onError) onError(e); else onData(null, 0, e);
            // The resource may come back (a 404 for a deleted entry): look again later.
            index = 0;
            await this.sleep(2000);
            continue;
          }
          failing.add(me);
          showBanner();
          await this.sleep(delay);
          delay = Math.min(delay * 2, 10000);
        }
      }
    };
    loop();
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.timers.delete(t); resolve(); }, ms);
      this.timers.add(t);
    });
  }

  close() {
    this.ctrl.abort();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    failing.clear();
    showBanner();
  }
}

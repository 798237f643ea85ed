// The live event stream (events.md): `GET /api/events` as Server-Sent Events, read with fetch
// because EventSource cannot send the bearer token. It reconnects by itself and resumes with
// Last-Event-ID, so nothing is missed and nothing comes twice. A server without the route
// (404) is remembered as such: the page then refreshes its views by polling instead.

import { authHeaders, notifyUnauthorized } from './api.js';

/** Events kept for the Events view (newest first). */
const KEEP = 500;
/** The server sends a comment at least every 15 s: silence for longer means a dead line. */
const SILENCE_MS = 45000;
/** How often a server without the stream is asked again (it may have been upgraded). */
const RECHECK_MS = 60000;

/** Splits a byte stream of text/event-stream into events (the WHATWG parsing rules). */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = '';
    this.data = [];
    this.type = '';
    this.id = null;
  }

  push(text) {
    this.buffer += text;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A CR at the very end may be the first half of a CRLF that is still on its way.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === '') {
      if (this.data.length) this.onEvent({ id: this.id, type: this.type || 'message', data: this.data.join('\n') });
      this.data = [];
      this.type = '';
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') this.data.push(value);
    else if (name === 'event') this.type = value;
    else if (name === 'id' && !value.includes('\0')) this.id = value;
  }
}

export class Live {
  /**
   * onEvent(event): a CloudEvent arrived. onState(state): 'connecting', 'live', 'reconnecting',
   * 'unavailable' (no such route on this server), 'unauthorized'. onResync(): the stream
   * (re)started, so whatever happened while it was down must be read again.
   */
  constructor({ onEvent, onState, onResync }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onResync = onResync;
    this.state = 'connecting';
    this.lastId = null;
    this.recent = [];
    this.listeners = new Set();
    this.stopped = true;
    this.controller = null;
    this.wakeUp = null;
    this.generation = 0;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.generation += 1;
    this.run(this.generation);
  }

  stop() {
    this.stopped = true;
    this.generation += 1;
    if (this.controller) this.controller.abort();
    this.wake();
  }

  /** Ends a wait between attempts (after signing in, say). */
  wake() {
    if (this.wakeUp) this.wakeUp();
  }

  /** Listens to every event; returns the function that stops listening. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wakeUp = null;
        resolve();
      }
      this.wakeUp = done;
    });
  }

  async run(generation) {
    let delay = 500;
    // A loop left over from before a stop() ends at its next turn.
    while (!this.stopped && generation === this.generation) {
      this.controller = new AbortController();
      const headers = { Accept: 'text/event-stream', ...authHeaders() };
      if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId;
      let response;
      try {
        response = await fetch('/api/events', { headers, signal: this.controller.signal, cache: 'no-store' });
      } catch (_) {
        if (this.stopped || generation !== this.generation) break;
        this.setState('reconnecting');
        await this.sleep(delay);
        delay = Math.min(delay * 2, 15000);
        continue;
      }
      if (generation !== this.generation) {
        try { await response.body?.cancel(); } catch (_) { /* already closed */ }
        break;
      }
      if (response.status === 404) {
        this.setState('unavailable');
        await this.sleep(RECHECK_MS);
        continue;
      }
      if (response.status === 401) {
        let problem = {};
        try {
          problem = await response.json();
        } catch (_) {
          // The status says enough.
        }
        this.setState('unauthorized');
        notifyUnauthorized(problem);
        await this.sleep(RECHECK_MS);
        continue;
      }
      if (response.status === 410) {
        // Retention removed events this page had not seen: start from now, read the rest anew.
        this.lastId = null;
        this.onResync();
        continue;
      }
      const type = response.headers.get('content-type') || '';
      if (!response.ok || !type.startsWith('text/event-stream') || !response.body) {
        try { await response.body?.cancel(); } catch (_) { /* already closed */ }
        this.setState('reconnecting');
        await this.sleep(delay);
        delay = Math.min(delay * 2, 15000);
        continue;
      }
      this.setState('live');
      this.onResync();
      const openedAt = Date.now();
      await this.read(response.body);
      if (this.stopped || generation !== this.generation) break;
      if (Date.now() - openedAt > 10000) delay = 500;
      this.setState('reconnecting');
      await this.sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  }

  async read(body) {
    const controller = this.controller;
    const parser = new SseParser((message) => this.dispatch(message));
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), SILENCE_MS);
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        parser.push(value);
      }
    } catch (_) {
      // Aborted or cut: the caller reconnects.
    } finally {
      clearTimeout(timer);
    }
  }

  dispatch(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    if (!event || typeof event !== 'object') return;
    if (message.id !== null) this.lastId = message.id;
    else if (event.id !== undefined) this.lastId = String(event.id);
    if (!event.type) event.type = message.type;
    this.recent.unshift(event);
    if (this.recent.length > KEEP) this.recent.length = KEEP;
    this.onEvent(event);
    for (const listener of this.listeners) listener(event);
  }
}

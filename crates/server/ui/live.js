// The live event stream (events.md): `GET /api/events` as Server-Sent Events, read with fetch
// because EventSource cannot send the bearer token. It reconnects by itself and resumes with
// Last-Event-ID, so nothing is missed and nothing comes twice. Without a cursor the server starts
// at the next new event; below retention's floor it answers 410, after which the page starts
// from now and reads its views anew. A server that cuts a consumer too slow for it ends the
// stream: the page resumes at once. A server without the route (404) is asked again every
// minute; meanwhile the page refreshes its views by polling.

import { authHeaders, notifyUnauthorized } from './api.js';

/** Events kept for the Events view (newest first). */
const KEEP = 500;
/** The server sends a comment at least every 15 s: silence for longer means a dead line. */
const SILENCE_MS = 45000;
/** How often a server without the stream is asked again (it may have been upgraded). */
const RECHECK_MS = 60000;
/** The longest wait between two attempts to reconnect. */
const MAX_DELAY_MS = 15000;

/** Lets go of an answer's body that is not read. */
async function discard(response) {
  try {
    await response.body?.cancel();
  } catch (_) {
    // Already closed.
  }
}

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
   * started without a cursor (the first time, or after a 410), so what happened before it must
   * be read again; a stream resumed with Last-Event-ID brings what was missed by itself.
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
    /** How often retention removed events before this page could read them (410). */
    this.gaps = 0;
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
      // Without a cursor the server starts at the next new event: what happened before must
      // then be read anew (onResync), once the stream is open and nothing more can slip by.
      const resuming = this.lastId !== null;
      if (resuming) headers['Last-Event-ID'] = this.lastId;
      let response;
      try {
        response = await fetch('/api/events', { headers, signal: this.controller.signal, cache: 'no-store' });
      } catch (_) {
        if (this.stopped || generation !== this.generation) break;
        this.setState('reconnecting');
        await this.sleep(delay);
        delay = Math.min(delay * 2, MAX_DELAY_MS);
        continue;
      }
      if (generation !== this.generation) {
        await discard(response);
        break;
      }
      if (response.status === 404) {
        await discard(response);
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
        // Retention removed events after the last one this page saw: start from now, and read
        // the views anew (the events in between are gone from the feed for good).
        await discard(response);
        this.lastId = null;
        this.gaps += 1;
        continue;
      }
      const type = response.headers.get('content-type') || '';
      if (!response.ok || !type.startsWith('text/event-stream') || !response.body) {
        await discard(response);
        this.setState('reconnecting');
        await this.sleep(delay);
        delay = Math.min(delay * 2, MAX_DELAY_MS);
        continue;
      }
      this.setState('live');
      if (!resuming) this.onResync();
      const openedAt = Date.now();
      await this.read(response.body);
      if (this.stopped || generation !== this.generation) break;
      // A stream that ran a while ended for a reason of its own (a restart, a proxy, this page
      // falling behind): come back at once. One that keeps ending at once is waited for longer.
      if (Date.now() - openedAt > 10000) delay = 0;
      this.setState('reconnecting');
      if (delay) await this.sleep(delay);
      delay = Math.min(Math.max(delay * 2, 500), MAX_DELAY_MS);
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

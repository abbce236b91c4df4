// flowplan console: the SharedWorker that shares a browser's connections to the daemon
// among the event streams of all its console pages. A browser opens at most 6 HTTP/1.1
// connections to one host, and a live page's stream holds one as long as it is open: a
// 7th live page used to wait. So the first DIRECT streams of a browser each hold a
// connection of their own (an EventSource in its page: the quickest way to a page), and
// once there are more, DIRECT_BESIDE of them keep theirs and the others share one,
// `GET /events?s=URL&last=ID&...` (daemon/server/console/multiplex.py), read here and handed
// to their pages. Either way one connection stays free for loading pages.
//
// console.js's flowplanStreams tells this worker of each stream it opens ({op: "open", id,
// url}: the URL from where the page stands) and closes ({op: "close", id}; {op: "bye"}: all
// of a page's), and gets back messages, a read's worth in one array: {id, type: "direct"}
// (open your own EventSource) or {id, type: "shared"} (close it and open the stream here
// again, from where the page stands); then for a shared stream its events as an EventSource
// would give them ({id, type, data, lastEventId}), and {id, type: "open" | "error" |
// "failed"} as its connection opens, breaks, or is refused. When the set of shared streams
// changes, or their connection breaks (a daemon restarted), the worker opens a new
// connection in which each goes on after the last event it read (`last`, as its
// Last-Event-ID would say): a page misses nothing and sees nothing twice.
"use strict";

const DIRECT = 5;  // streams with a connection of their own while there are no more
const DIRECT_BESIDE = 4;  // ... and beside the shared connection once there are
const RETRY_MS = 1000;  // after a connection broke or ended, as the daemon's `retry:` says
const SETTLE_MS = 10;  // streams opened or closed meanwhile share one new connection
const MAX_STREAMS = 64;  // in one connection (the daemon's limit)
const MAX_QUERY = 6000;  // characters of one connection's query (the daemon's URL < 8 KiB)

// "port:id" -> {key, port, id, url, last, direct: true | false | null (not yet told),
// ready: shared, and its page's position known, generation: of its registration}
const streams = new Map();
let connections = [];  // each an AbortController
let timer = null;
let ports = 0;

self.addEventListener("connect", function (event) {
  const port = event.ports[0];
  const number = ++ports;
  port.addEventListener("message", function (message) {
    const order = message.data;
    const key = number + ":" + order.id;
    let changed = false;
    if (order.op === "open") {
      const stream = streams.get(key);
      if (stream) {  // a stream moved to the shared connection: where its page stands
        stream.url = order.url;
        stream.last = "";
        stream.ready = !stream.direct;
        stream.generation += 1;
        changed = stream.ready;
      } else {
        streams.set(key, { key: key, port: port, id: order.id, url: order.url, last: "",
                           direct: null, ready: false, generation: 0 });
      }
    } else {
      for (const [other, stream] of streams) {
        if (other === key || (order.op === "bye" && stream.port === port)) {
          streams.delete(other);
          changed = changed || stream.ready;
        }
      }
    }
    if (assign() || changed) {
      later(SETTLE_MS);
    }
  });
  port.start();
});

// Which streams hold a connection of their own: the oldest. True if the shared connection's
// streams changed.
function assign() {
  const direct = streams.size <= DIRECT ? streams.size : DIRECT_BESIDE;
  let changed = false;
  let index = 0;
  for (const stream of streams.values()) {
    const now = index++ < direct;
    if (stream.direct === now) {
      continue;
    }
    if (now) {
      changed = changed || stream.ready;
      stream.ready = false;
      tell(stream, { type: "direct" });
    } else if (stream.direct === null) {  // new: its URL is where its page stands
      stream.ready = changed = true;
    } else {  // its page closes its EventSource and opens the stream here again
      tell(stream, { type: "shared" });
    }
    stream.direct = now;
  }
  return changed;
}

// A stream ended or refused for good: the others may take its connection.
function drop(stream) {
  streams.delete(stream.key);
  if (assign()) {
    later(SETTLE_MS);
  }
}

function later(delay) {
  clearTimeout(timer);
  timer = setTimeout(reconnect, delay);
}

// Messages for the pages, each port's sent as one at the end of the current step: a page
// handles a read's events in one task (and draws one frame for them), as an EventSource's.
const outbox = new Map();  // port -> [message...]

function tell(stream, message) {
  message.id = stream.id;
  const waiting = outbox.get(stream.port);
  if (waiting) {
    waiting.push(message);
    return;
  }
  outbox.set(stream.port, [message]);
  if (outbox.size === 1) {
    queueMicrotask(send);
  }
}

function send() {
  for (const [port, messages] of outbox) {
    port.postMessage(messages);
  }
  outbox.clear();
}

// Drops the shared connections and opens new ones for the shared streams there are now:
// one, unless a browser shares more than MAX_STREAMS streams.
function reconnect() {
  timer = null;
  for (const controller of connections) {
    controller.abort();
  }
  connections = [];
  let group = [];
  let length = 0;
  for (const stream of streams.values()) {
    if (!stream.ready) {
      continue;
    }
    const size = encodeURIComponent(stream.url).length + stream.last.length + 10;
    if (group.length && (group.length === MAX_STREAMS || length + size > MAX_QUERY)) {
      connect(group);
      group = [];
      length = 0;
    }
    group.push({ stream: stream, generation: stream.generation });
    length += size;
  }
  if (group.length) {
    connect(group);
  }
}

// Whether `entry` of a connection's group still stands for its stream: not closed, not
// moved to its own connection, not opened again from another position since.
function current(entry) {
  const stream = entry.stream;
  return streams.get(stream.key) === stream && stream.ready &&
    stream.generation === entry.generation;
}

async function connect(group) {
  const controller = new AbortController();
  connections.push(controller);
  const query = new URLSearchParams();
  for (const entry of group) {
    query.append("s", entry.stream.url);
    query.append("last", entry.stream.last);
  }
  try {
    const response = await fetch("/events?" + query.toString(), {
      signal: controller.signal, cache: "no-store", credentials: "same-origin",
      headers: { Accept: "text/event-stream" },
    });
    if (response.ok) {
      await read(response.body, group, controller.signal);
    } else if (response.status < 500) {
      // refused (logged out: 401; a stream the daemon does not know: 400): as an
      // EventSource, each stream fails for good
      for (const entry of group.filter(current)) {
        tell(entry.stream, { type: "failed", data: JSON.stringify({ status: response.status }) });
        drop(entry.stream);
      }
      return;
    }
  } catch (error) {
    // the connection broke (a daemon restarted) or was dropped for a new one
  }
  if (controller.signal.aborted) {
    return;  // replaced by a new connection
  }
  const left = group.filter(current);
  for (const entry of left) {
    tell(entry.stream, { type: "error" });
  }
  if (left.length) {
    later(RETRY_MS);
  }
}

// The answer's events, each to its stream's page (server-sent events: fields, then a blank
// line; the daemon writes "\n" line ends and no BOM).
async function read(body, group, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = null;
  let id = null;
  let index = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done || signal.aborted) {
      return;
    }
    buffer += value;
    let start = 0;
    let end;
    while ((end = buffer.indexOf("\n", start)) >= 0) {
      const line = buffer.slice(start, end);
      start = end + 1;
      if (line === "") {  // the event's end
        const entry = index === null ? undefined : group[Number(index)];
        if (data !== null && entry && current(entry)) {
          const stream = entry.stream;
          if (id !== null) {
            stream.last = id;
          }
          tell(stream, { type: type || "message", data: data, lastEventId: stream.last });
          if (type === "end" || type === "failed") {
            drop(stream);  // for good: no new connection follows it
          }
        }
        type = "";
        data = id = index = null;
        continue;
      }
      if (line[0] === ":") {
        continue;  // a comment (a keep-alive)
      }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text[0] === " ") {
        text = text.slice(1);
      }
      if (field === "event") {
        type = text;
      } else if (field === "data") {
        data = data === null ? text : data + "\n" + text;
      } else if (field === "id") {
        id = text;
      } else if (field === "stream") {
        index = text;
      }
    }
    buffer = buffer.slice(start);
  }
}

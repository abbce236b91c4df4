// flowplan console: follows a run page's changes live (server-sent events from
// /runs/RUN_ID/events) and keeps each node's data-status and text current; its
// flowplanStreams (used by panel.js and backfill.js too) close a hidden page's streams. No
// framework; served from /static/ under the console's Content-Security-Policy
// (script-src 'self').
"use strict";

// The page's event streams, paused while the page is hidden. A browser opens at most 6
// HTTP/1.1 connections to one host and a stream holds one as long as it is open, so the
// streams of all of a browser's console pages ask one SharedWorker (stream-worker.js)
// how: the first 5 of the browser each open an EventSource (a connection of its own, the
// quickest way to the page), and beyond that all but 4 share one connection the worker
// reads (`GET /events`); a browser without SharedWorker opens an EventSource per stream.
// Either way a page hidden for PAUSE_AFTER_MS (another tab in front, a minimised window)
// closes its streams, and opens them again when shown, each from where it stopped (its
// `url()` says where: ?after= a run's sequence, ?offset= a log's byte offset; a
// backfill's stream starts with its whole state). While open, a stream reconnects by
// itself (a daemon restarted) after the last event it read (Last-Event-ID). A stream that
// `notices` and has not connected after STALLED_MS (nor failed: the browser is holding it
// back) shows the page's "live updates paused" notice. For the tests, <html> counts
// data-streams-opened, data-streams-paused and data-streams-failed (refused by the daemon
// through the worker, for good); data-streams-live is the number of the page's
// streams connected now, data-streams-shared of those through the worker's connection.
window.flowplanStreams = (function () {
  const PAUSE_AFTER_MS = 3000;  // quick tab switches keep their streams
  const STALLED_MS = 4000;
  const streams = new Set();  // open or paused; a stream that ended leaves
  const stalled = new Set();
  const byId = new Map();  // of the streams in the worker, by the id it knows them by
  const root = document.documentElement;
  let pauseTimer = null;
  let ids = 0;
  let live = 0;
  let shared = 0;

  function count(key) {
    root.dataset[key] = String(Number(root.dataset[key] || "0") + 1);
  }

  function showNotice() {
    let notice = document.getElementById("live-notice");
    if (stalled.size && !notice) {
      notice = document.createElement("p");
      notice.id = "live-notice";
      notice.className = "notice live-notice";
      notice.setAttribute("role", "status");
      notice.textContent = "live updates paused: too many console pages open in this " +
        "browser (each live page holds one of its 6 connections to the daemon; hidden " +
        "pages give theirs back after a few seconds). This page goes on once one is free.";
      const main = document.querySelector("main") || document.body;
      main.insertBefore(notice, main.firstChild);
    } else if (!stalled.size && notice) {
      notice.remove();
    }
  }

  // The worker's port, or null: EventSources of the page's own (no SharedWorker, or it
  // could not start). Connected when the page opens its first stream: a page without
  // live updates starts no worker.
  let hub;
  function connect() {
    hub = null;
    if (!window.SharedWorker || !root.dataset.streamWorker) {
      return;
    }
    try {
      const worker = new SharedWorker(root.dataset.streamWorker, { name: "flowplan streams" });
      hub = worker.port;
      hub.addEventListener("message", function (message) {
        for (const event of message.data) {  // what one read of the connection brought
          const stream = byId.get(event.id);
          if (stream) {
            stream.hear(event.type, event);
          }
        }
      });
      hub.start();
      worker.addEventListener("error", function () {  // it could not start: go on without
        hub = null;
        reopen();
      });
      window.addEventListener("pagehide", function () {
        if (hub) {
          hub.postMessage({ op: "bye" });  // its streams stop with the page
        }
      });
    } catch (error) {
      hub = null;
    }
  }

  function reopen() {  // every stream on a new connection, from where the page stands
    for (const stream of streams) {
      stream.stop();
      stream.open();
    }
  }

  function Stream(url, listeners, notices) {
    this.url = url;  // a function: the URL to open now, from where the page stands
    this.listeners = listeners;  // {event name: handler(message)}
    this.notices = notices;
    this.source = null;  // an EventSource, or the worker's {id, port, own, close} for it
    this.live = false;
    this.sharing = false;  // live, through the worker's connection
    this.failed = false;  // a refused or broken connection (the daemon down) is not held back
    this.timer = null;
    streams.add(this);
    this.open();
  }

  // The page's deferred scripts after this one (panel.js, timeline.js) listen to its
  // changes: a stream opened before they ran could hand them changes nobody heard, so
  // streams open once they all have (DOMContentLoaded; readyState is already
  // "interactive" while they run).
  let ready = false;
  document.addEventListener("DOMContentLoaded", function () {
    ready = true;
    for (const stream of streams) {
      stream.open();
    }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {  // back from the browser's cache: its streams went with it
      reopen();
    }
  });

  Stream.prototype.open = function () {
    if (this.source || !streams.has(this) || document.visibilityState === "hidden" ||
        !ready) {
      return;  // a hidden page opens it when shown; a loading one once it has loaded
    }
    count("streamsOpened");
    this.failed = false;
    const stream = this;
    if (hub === undefined) {
      connect();
    }
    if (hub) {  // the worker says how: "direct" (an EventSource here) or shared (through it)
      const id = ++ids;
      const port = hub;
      byId.set(id, this);
      this.source = {
        id: id,
        port: port,
        own: null,  // its EventSource, while it has a connection of its own
        close: function () {
          byId.delete(id);
          if (this.own) {
            this.own.close();
          }
          port.postMessage({ op: "close", id: id });
        },
      };
      port.postMessage({ op: "open", id: id, url: this.url() });
    } else {
      this.source = this.eventSource();
    }
    if (this.notices) {
      const source = this.source;
      this.timer = setTimeout(function () {
        if (stream.source === source && !stream.live && !stream.failed) {
          stalled.add(stream);
          showNotice();
        }
      }, STALLED_MS);
    }
  };

  Stream.prototype.eventSource = function () {  // the stream in a connection of its own
    const stream = this;
    const source = new EventSource(this.url());
    for (const name in this.listeners) {
      source.addEventListener(name, this.listeners[name]);
    }
    source.addEventListener("open", function () { stream.hear("open"); });
    source.addEventListener("error", function () { stream.hear("error"); });
    return source;
  };

  // What the stream's connection says ("open", "error"), or the worker: "direct" (open an
  // EventSource), "shared" (close it: the worker follows the stream from where the page
  // stands), "failed" (refused for good), and a shared stream's own events.
  Stream.prototype.hear = function (type, message) {
    const source = this.source;
    if (type === "direct") {
      if (!source.own) {
        this.setLive(false);  // until its own connection opens
        source.own = this.eventSource();
      }
    } else if (type === "shared") {
      if (source.own) {
        source.own.close();
        source.own = null;
        this.setLive(false);
      }
      source.port.postMessage({ op: "open", id: source.id, url: this.url() });
    } else if (type === "open") {
      this.setLive(true);
      if (stalled.delete(this)) {
        showNotice();
      }
    } else if (type === "error" || type === "failed") {
      this.failed = true;
      this.setLive(false);
      if (type === "failed") {
        count("streamsFailed");
        this.close();
      }
    } else if (this.listeners[type]) {
      this.listeners[type](message);
    }
  };

  Stream.prototype.setLive = function (now) {
    const source = this.source;
    const sharing = now && source !== null && source.id !== undefined && !source.own;
    if (this.live !== now) {
      this.live = now;
      live += now ? 1 : -1;
      root.dataset.streamsLive = String(live);
    }
    if (this.sharing !== sharing) {
      this.sharing = sharing;
      shared += sharing ? 1 : -1;
      root.dataset.streamsShared = String(shared);
    }
  };

  Stream.prototype.stop = function () {  // its connection closed; true if it had one
    const had = this.source !== null;
    if (had) {
      this.source.close();
      this.source = null;
    }
    this.setLive(false);
    clearTimeout(this.timer);
    if (stalled.delete(this)) {
      showNotice();
    }
    return had;
  };

  Stream.prototype.pause = function () {  // until the page is shown again
    if (this.stop()) {
      count("streamsPaused");
    }
  };

  Stream.prototype.close = function () {  // for good: it ended, or the page needs it no more
    streams.delete(this);
    this.stop();
  };

  document.addEventListener("visibilitychange", function () {
    clearTimeout(pauseTimer);
    pauseTimer = null;
    if (document.visibilityState === "hidden") {
      pauseTimer = setTimeout(function () {
        for (const stream of streams) {
          stream.pause();
        }
      }, PAUSE_AFTER_MS);
    } else {
      for (const stream of streams) {
        stream.open();
      }
    }
  });

  return {
    // follow(url, listeners, notices): a stream opened now (or once the page is shown)
    follow: function (url, listeners, notices) {
      return new Stream(url, listeners, Boolean(notices));
    },
  };
})();

// flowplanInView(element, onShown): a function that says whether any of `element` is on
// screen, kept by an IntersectionObserver; `onShown` is called each time it
// comes into view. A run page writes its node table and draws its timeline (both usually
// below the fold) only while they are in view, and catches up when they come into view.
window.flowplanInView = function (element, onShown) {
  if (!element || !window.IntersectionObserver) {
    return function () { return true; };
  }
  let shown = true;  // until the observer's first answer, given at once
  new IntersectionObserver(function (entries) {
    const now = entries[entries.length - 1].isIntersecting;
    const came = now && !shown;
    shown = now;
    if (came) {
      onShown();
    }
  }).observe(element);
  return function () { return shown; };
};

(function () {
  // a node's page: its log, followed while the attempt runs; shown again, it goes on from
  // the byte offset and attempt it had reached
  const log = document.getElementById("log");
  if (log) {
    log.scrollTop = log.scrollHeight;  // its end: where the newest lines and errors are
  }
  if (log && window.EventSource) {
    const stream = window.flowplanStreams.follow(function () {
      return log.dataset.bytes === undefined ? log.dataset.url :
        log.dataset.url + "?attempt=" + log.dataset.attempt + "&offset=" + log.dataset.bytes;
    }, {
      log: function (message) {
        const chunk = JSON.parse(message.data);
        // kept at its end while it was there; left where the reader scrolled to otherwise
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent += chunk.text;
        if (atEnd) {
          log.scrollTop = log.scrollHeight;
        }
        log.dataset.attempt = String(chunk.attempt);
        log.dataset.bytes = String(message.lastEventId);
      },
      end: function () {
        stream.close();
        log.dataset.ended = "yes";
      },
    });
  }
})();

(function () {
  // a run's page (its node table) or a node's page: the element naming the run to watch
  const table = document.querySelector("[data-watch-run]");
  if (!table || table.dataset.finished === "yes" || !window.EventSource) {
    return;
  }
  const runStatus = document.getElementById("run-status");
  // a node's page: its attempts table, the latest attempt's row kept current
  const attempts = document.querySelector("#attempts tbody");

  function showAttempt(attempt) {
    let row = attempts.querySelector('tr[data-attempt="' + attempt.number + '"]');
    if (!row) {
      for (const empty of attempts.querySelectorAll("tr:not([data-attempt])")) {
        empty.remove();
      }
      row = document.createElement("tr");
      row.dataset.attempt = String(attempt.number);
      for (let i = 0; i < 8; i++) {
        row.appendChild(document.createElement("td"));
      }
      const status = document.createElement("span");
      status.className = "status";
      row.cells[1].appendChild(status);
      row.cells[5].className = "error";
      attempts.appendChild(row);
    }
    const status = row.cells[1].querySelector(".status");
    status.dataset.status = attempt.status;
    status.textContent = attempt.status;
    row.cells[0].textContent = String(attempt.number);
    row.cells[2].textContent = attempt.started;
    row.cells[3].textContent = attempt.finished;
    row.cells[4].textContent = attempt.exit_code === null ? "" : String(attempt.exit_code);
    row.cells[5].textContent = attempt.error;
    row.cells[6].textContent = attempt.spark;
  }
  // EventSource reconnects by itself and sends Last-Event-ID: the server resumes after it;
  // a page shown again opens the stream after the last change it showed. Each of the
  // daemon's writes comes as one `changes` event (batch=1): one event for the page to
  // handle, however many changes it carries (with an event a change, 20 pages following a
  // fast run cost their browsers ~40% more CPU: 1.72 s a run against 1.21 s; bench/web.py).
  let sequence = Number(table.dataset.sequence || "0");
  function url() {
    return "/runs/" + encodeURIComponent(table.dataset.run) + "/events?batch=1&after=" +
      encodeURIComponent(String(sequence));
  }

  // A node's change is shown at once where it costs little: its drawing in the graph
  // (graph.js: a new fill) and a node page's status. The node table's row, whose new text
  // makes the browser lay the table out again, is written at once after a quiet spell,
  // then at most every TABLE_PACE_MS with the latest state of each node changed meanwhile:
  // 20 pages following a run of ~400 changes a second each spent most of their CPU laying
  // their table out again (bench/web.py).
  const TABLE_PACE_MS = 250;
  const rows = new Map();  // node name -> its latest state, not yet in its row
  let rowsTimer = null;
  let rowsWritten = -Infinity;
  let tableRows = null;  // node name -> its row, found at the first write

  // Out of view (below the fold, as on most screens while the graph is looked at), the
  // rows wait, each for its node's latest state, also once the run has ended: they are
  // written when the table comes into view (or the page is printed). Rows written below
  // the fold cost 20 pages following a run most of their delay in showing a change in the
  // graph, and laying the table out again at the run's end ~12 ms of each page's CPU, a
  // fifth of its main thread's for the run (bench/web.py).
  const tableInView = window.flowplanInView(attempts ? attempts.closest("table") : table,
                                            function () {
    if (rows.size && rowsTimer === null) {
      writeRows();
    }
  });
  window.addEventListener("beforeprint", function () { writeRows(); });

  function writeRows() {
    clearTimeout(rowsTimer);
    rowsTimer = null;
    rowsWritten = performance.now();
    if (tableRows === null) {
      tableRows = new Map();
      for (const row of table.querySelectorAll("tr[data-node]")) {
        tableRows.set(row.dataset.node, row);
      }
    }
    for (const [name, node] of rows) {
      const row = tableRows.get(name);
      if (row) {
        row.dataset.status = node.status;
        row.querySelector(".status").textContent = node.status;
        row.querySelector(".attempts").textContent = String(node.attempts);
        if (node.attempt) {  // its latest attempt's exit code and error
          const exit = node.attempt.exit_code;
          row.querySelector(".exit").textContent = exit === null ? "" : String(exit);
          row.querySelector(".error").textContent = node.attempt.error;
        }
      }
      if (attempts && node.attempt && table.dataset.watchNode === name) {
        for (const attempt of (node.earlier || []).concat([node.attempt])) {
          showAttempt(attempt);
        }
      }
    }
    rows.clear();
  }

  // Each node's elements that show its status outside the table (its <g> in the graph, a
  // node page's heading), by name: found once, and again when the graph is drawn (it may
  // be drawn after the first changes came), rather than a search of the page per change.
  let shows = null;
  function showsOf(name) {
    if (shows === null) {
      shows = new Map();
      for (const element of document.querySelectorAll("[data-node][data-status]")) {
        if (element.localName !== "tr") {  // the table's: written below
          const node = element.dataset.node;
          shows.set(node, (shows.get(node) || []).concat([element]));
        }
      }
    }
    return shows.get(name) || [];
  }
  document.addEventListener("flowplan:graph-drawn", function () { shows = null; });

  function showNode(node) {
    for (const element of showsOf(node.name)) {
      element.dataset.status = node.status;
      if (element.classList.contains("status")) {
        element.textContent = node.status;
      }
    }
    rows.set(node.name, node);
    if (rowsTimer === null && tableInView()) {
      rowsTimer = setTimeout(writeRows,
                             Math.max(0, rowsWritten + TABLE_PACE_MS - performance.now()));
    }
  }

  // Each write's changes, in order: those not shown already are shown, then handed to the
  // page's other scripts (panel.js, timeline.js, the run's duration below) as one
  // "flowplan:changes" event. One event a write, not one a change: handing each change of
  // bench/web.py's chain to three listeners took ~1.0-1.4 ms of a page's ~6-7 ms of script
  // a run (Chromium's trace), one event a write ~0.3-0.4 ms.
  function onChanges(message) {
    const fresh = [];
    for (const change of JSON.parse(message.data)) {
      if (change.sequence > sequence) {
        sequence = change.sequence;
        onChange(change);
        fresh.push(change);
      }
    }
    if (fresh.length) {
      table.dataset.sequence = String(sequence);
      document.dispatchEvent(new CustomEvent("flowplan:changes", { detail: fresh }));
    }
  }

  function onChange(change) {
    if (change.node) {
      showNode(change.node);
    }
    if (runStatus && runStatus.dataset.status !== change.run_status) {
      runStatus.dataset.status = change.run_status;
      runStatus.textContent = change.run_status;
      const cancel = document.getElementById("cancel-form");
      if (cancel && ["SUCCEEDED", "FAILED", "CANCELLED"].includes(change.run_status)) {
        cancel.remove();  // a finished run has nothing to cancel
      }
    }
  }
  const stream = window.flowplanStreams.follow(url, {
    changes: onChanges,
    end: function () {
      stream.close();
      if (tableInView()) {
        writeRows();
      }
      table.dataset.finished = "yes";
      document.dispatchEvent(new CustomEvent("flowplan:end"));
    },
  }, true);
})();

(function () {
  // A run's duration (#run-duration on its page): counted up each second while the run
  // runs; once it ends, its finish (the time of the change that ended it) less its start.
  const shown = document.getElementById("run-duration");
  const runStatus = document.getElementById("run-status");
  const table = document.querySelector("[data-watch-run]");
  if (!shown || !runStatus || !table || table.dataset.finished === "yes") {
    return;
  }

  // the same text as the server's present.duration: "850 ms", "12.4 s", "3m 05s", "2h 01m"
  function formatDuration(seconds) {
    const ms = Math.round(Math.max(0, seconds) * 1000);
    if (ms < 1000) {
      return ms + " ms";
    }
    const tenths = Math.floor((ms + 50) / 100);
    if (tenths < 600) {
      return Math.floor(tenths / 10) + "." + (tenths % 10) + " s";
    }
    const whole = Math.max(60, Math.floor(ms / 1000));
    const pad = function (n) { return String(n).padStart(2, "0"); };
    if (whole < 3600) {
      return Math.floor(whole / 60) + "m " + pad(whole % 60) + "s";
    }
    return Math.floor(whole / 3600) + "h " + pad(Math.floor(whole % 3600 / 60)) + "m";
  }

  const done = ["SUCCEEDED", "FAILED", "CANCELLED"];
  let started = shown.dataset.started ? Number(shown.dataset.started) : null;  // the daemon's clock
  // the browser's clock may not be the daemon's: count on from the seconds at render time
  let since = shown.dataset.seconds ? Date.now() / 1000 - Number(shown.dataset.seconds) : null;
  let status = runStatus.dataset.status;
  function setText(text) {
    if (shown.textContent !== text) {
      shown.textContent = text;
    }
  }
  function count() {
    if (since !== null && status === "RUNNING") {
      setText("running " + formatDuration(Date.now() / 1000 - since));
    }
  }
  const timer = setInterval(count, 1000);  // each second: a tick is a frame to draw
  // each change of the run, in order, as the events above hand them on (its start and its
  // end may come in one batch: both count)
  function onChange(change) {
    if (change.run_status === status) {
      return;
    }
    status = change.run_status;
    if (status === "RUNNING" && started === null) {  // started since the page was drawn
      started = change.time;
      since = Date.now() / 1000;
      count();
    }
    if (done.includes(status)) {
      clearInterval(timer);
      document.removeEventListener("flowplan:changes", onChanges);
      if (started !== null) {
        setText(formatDuration(change.time - started));
      }
    }
  }
  function onChanges(event) {
    for (const change of event.detail) {
      onChange(change);
    }
  }
  document.addEventListener("flowplan:changes", onChanges);
})();

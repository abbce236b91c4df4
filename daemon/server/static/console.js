// flowplan console: follows a run page's changes live (server-sent events from
// /runs/RUN_ID/events) and keeps each node's data-status and text current. No framework;
// served from /static/ under the console's Content-Security-Policy (script-src 'self').
"use strict";

(function () {
  // a node's page: its log, followed while the attempt runs
  const log = document.getElementById("log");
  if (log && window.EventSource) {
    const source = new EventSource(log.dataset.url);
    source.addEventListener("log", function (message) {
      log.textContent += JSON.parse(message.data).text;
      log.dataset.bytes = String(message.lastEventId);
    });
    source.addEventListener("end", function () {
      source.close();
      log.dataset.ended = "yes";
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
  // EventSource reconnects by itself and sends Last-Event-ID: the server resumes after it.
  const url = "/runs/" + encodeURIComponent(table.dataset.run) + "/events?after=" +
    encodeURIComponent(table.dataset.sequence || "0");
  const source = new EventSource(url);

  source.addEventListener("change", function (message) {
    const change = JSON.parse(message.data);
    table.dataset.sequence = String(change.sequence);
    if (change.node) {
      // the node's row and its drawing in the graph (graph.js)
      const selector = '[data-node="' + CSS.escape(change.node.name) + '"][data-status]';
      for (const element of document.querySelectorAll(selector)) {
        element.dataset.status = change.node.status;
        if (element.classList.contains("status")) {
          element.textContent = change.node.status;
        }
      }
      const row = table.querySelector('tr[data-node="' + CSS.escape(change.node.name) + '"]');
      if (row) {
        row.querySelector(".status").textContent = change.node.status;
        row.querySelector(".attempts").textContent = String(change.node.attempts);
      }
      if (attempts && change.node.attempt && table.dataset.watchNode === change.node.name) {
        showAttempt(change.node.attempt);
      }
    }
    if (runStatus) {
      runStatus.dataset.status = change.run_status;
      runStatus.dataset.changed = String(change.time);  // the run's duration reads it
      runStatus.textContent = change.run_status;
    }
    // other scripts (panel.js, timeline.js) receive each change too
    document.dispatchEvent(new CustomEvent("flowplan:change", { detail: change }));
  });
  source.addEventListener("end", function () {
    source.close();
    table.dataset.finished = "yes";
    document.dispatchEvent(new CustomEvent("flowplan:end"));
  });
})();

(function () {
  // A run's duration (#run-duration on its page): counted up each second while the run
  // runs; once it ends, its finish (the time of the change that ended it, which the events
  // above leave on #run-status) less its start.
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
  function count() {
    if (since !== null && runStatus.dataset.status === "RUNNING") {
      shown.textContent = "running " + formatDuration(Date.now() / 1000 - since);
    }
  }
  const timer = setInterval(count, 250);
  // each change of the run's status, as the events above set it (one event at a time)
  new MutationObserver(function (records, observer) {
    const changed = Number(runStatus.dataset.changed || "0");
    const status = runStatus.dataset.status;
    if (status === "RUNNING" && started === null && changed) {  // started since the page was drawn
      started = changed;
      since = Date.now() / 1000;
      count();
    }
    if (done.includes(status)) {
      clearInterval(timer);
      observer.disconnect();
      if (started !== null && changed) {
        shown.textContent = formatDuration(changed - started);
      }
    }
  }).observe(runStatus, {attributes: true, attributeFilter: ["data-status", "data-changed"]});
})();

// flowplan console: keeps a backfill's page current (server-sent events from
// /backfills/ID/events): its status, progress and the status of its runs, adding the runs
// it creates. Each `backfill` event carries the backfill's state and the runs that changed
// (all of them in the first event of a connection); `end` comes when it has finished.
"use strict";

(function () {
  const page = document.querySelector("[data-watch-backfill]");
  if (!page || page.dataset.finished === "yes" || !window.EventSource) {
    return;
  }
  const PARTS = ["succeeded", "failed", "running", "cancelled"];
  // a page of older runs (?page=): its rows are kept current, the newest runs are not added
  const paged = page.dataset.paged === "yes";

  function words(p) {
    return p.succeeded + " done, " + p.failed + " failed, " + p.running + " running, " +
      p.pending + " pending" + (p.cancelled ? ", " + p.cancelled + " cancelled" : "") +
      " of " + p.total;
  }

  function showProgress(p) {
    document.getElementById("progress").textContent = words(p);
    const bar = document.getElementById("progress-bar");
    if (!bar) {
      return;
    }
    bar.setAttribute("aria-label", words(p));
    let x = 0;
    for (const part of PARTS) {
      const width = p.total ? p[part] * 100 / p.total : 0;
      const rect = bar.querySelector('rect[data-part="' + part + '"]');
      rect.setAttribute("x", x.toFixed(2));
      rect.setAttribute("width", width.toFixed(2));
      x += width;
    }
  }

  function link(runId) {
    const a = document.createElement("a");
    a.href = "/runs/" + encodeURIComponent(runId);
    a.textContent = runId;
    return a;
  }

  function newRow(run) {
    const row = document.createElement("tr");
    row.dataset.run = run.run_id;
    row.dataset.key = run.logical_time + " " + run.run_id;
    for (let i = 0; i < 4; i++) {
      row.appendChild(document.createElement("td"));
    }
    row.cells[0].appendChild(link(run.run_id));
    row.cells[1].textContent = run.logical_time;
    const status = document.createElement("span");
    status.className = "status";
    row.cells[2].appendChild(status);
    if (run.previous_run_id) {
      row.cells[3].appendChild(link(run.previous_run_id));
    }
    // in order: oldest tick first, a resumed run after the run it resumes
    const body = document.querySelector("#backfill-runs tbody");
    const later = Array.from(body.querySelectorAll("tr[data-key]"))
      .find(function (other) { return other.dataset.key > row.dataset.key; });
    body.insertBefore(row, later || null);
    return row;
  }

  function showRun(run) {
    let row = document.querySelector('#backfill-runs tr[data-run="' + CSS.escape(run.run_id) + '"]');
    if (!row) {
      if (paged) {
        return;  // not on this page
      }
      row = newRow(run);
    }
    const status = row.querySelector(".status");
    status.dataset.status = run.status;
    status.textContent = run.status;
  }

  function show(state) {
    const status = document.getElementById("backfill-status");
    status.dataset.status = state.status;
    status.textContent = state.status;
    showProgress(state.progress);
    for (const run of state.runs) {
      showRun(run);
    }
    if (!paged) {  // the link to the runs before the newest shown
      document.getElementById("more-runs").hidden = !state.older;
      document.getElementById("older-runs").href = "/backfills/" +
        encodeURIComponent(page.dataset.watchBackfill) + "?page=" +
        encodeURIComponent(state.older);
    }
    if (state.finished_at) {
      document.getElementById("finished-at").textContent = " · finished " + state.finished_at;
    }
    if (state.status !== "RUNNING") {
      const cancel = document.getElementById("cancel-backfill-form");
      if (cancel) {
        cancel.remove();  // nothing left to cancel
      }
    }
  }

  // On a reconnect (a daemon restarted) or when the page is shown again (console.js's
  // flowplanStreams close a hidden page's streams) the first event is the whole state.
  const url = "/backfills/" + encodeURIComponent(page.dataset.watchBackfill) + "/events";
  const stream = window.flowplanStreams.follow(function () { return url; }, {
    backfill: function (message) {
      show(JSON.parse(message.data));
    },
    end: function () {
      stream.close();
      page.dataset.finished = "yes";
    },
  }, true);
})();

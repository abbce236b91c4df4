// flowplan console: the node panel beside a graph. A click on a node (in the graph, or on
// its name in the table) opens it; the URL's fragment names it (#node=NAME), so a shared
// link opens the page with the panel open. Escape or the close button closes it.
// On a workflow page (#panel[data-panel="workflow"]) it shows the node's definition, read
// from the page (the Nodes table and the graph's edges). On a run page
// (data-panel="run") it shows the node's status and attempts from
// /runs/RUN_ID/nodes/NODE?format=json, kept current by the run's change events
// (console.js's "flowplan:changes"), and follows the latest attempt's log
// (/runs/RUN_ID/nodes/NODE/log) while it runs; for roles that may resume, "Tick for
// resume" ticks the node's box in the resume form.
"use strict";

(function () {
  const panel = document.getElementById("panel");
  const box = document.getElementById("graph");
  if (!panel || !box) {
    return;
  }
  const kind = panel.dataset.panel;
  const data = JSON.parse(box.dataset.graph);
  const known = new Set(data.nodes.map(function (node) { return node.name; }));
  let current = null;  // the name of the node shown
  let log = null;  // the stream of its log (console.js's flowplanStreams), while followed
  let shown = 0;  // bumped on each open: a late answer for a previous node is dropped
  let newest = 0;  // the latest attempt of the node shown seen in its changes

  function make(tag, attributes, text) {
    const element = document.createElement(tag);
    for (const key in attributes || {}) {
      element.setAttribute(key, attributes[key]);
    }
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  function nodeLink(name) {  // another node of the graph, opened in the panel
    const link = make("a", { href: "#node=" + encodeURIComponent(name), "data-open": name },
                      name);
    return link;
  }

  function fromHash() {
    const found = /^#node=(.+)$/.exec(location.hash);
    if (!found) {
      return null;
    }
    try {
      return decodeURIComponent(found[1]);
    } catch (error) {
      return null;
    }
  }

  function stopLog() {
    if (log) {
      log.close();
      log = null;
    }
  }

  function mark(name) {  // the node shown, outlined in the graph
    for (const group of document.querySelectorAll("#graph g.gnode.selected")) {
      group.classList.remove("selected");
    }
    if (name !== null) {
      const group = box.querySelector('g.gnode[data-node="' + CSS.escape(name) + '"]');
      if (group) {
        group.classList.add("selected");
      }
    }
  }

  // graph.js drew the graph after this panel opened (it waited for the daemon's layout)
  document.addEventListener("flowplan:graph-drawn", function () { mark(current); });

  function close() {
    stopLog();
    shown += 1;
    current = null;
    panel.hidden = true;
    panel.replaceChildren();
    panel.removeAttribute("data-node");
    box.parentElement.classList.remove("with-panel");
    mark(null);
    if (fromHash() !== null) {
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function open(name) {
    if (!known.has(name)) {
      close();
      return;
    }
    stopLog();
    shown += 1;
    newest = 0;
    current = name;
    const wanted = "#node=" + encodeURIComponent(name);
    if (location.hash !== wanted) {
      history.replaceState(null, "", wanted);
    }
    panel.replaceChildren();
    panel.dataset.node = name;
    const head = make("div", { class: "panel-head" });
    head.appendChild(make("h2", { id: "panel-name" }, name));
    const closer = make("button", { type: "button", id: "panel-close",
                                    "aria-label": "Close the panel", title: "Close (Esc)" },
                        "×");
    closer.addEventListener("click", close);
    head.appendChild(closer);
    panel.appendChild(head);
    panel.hidden = false;
    box.parentElement.classList.add("with-panel");
    mark(name);
    if (kind === "run") {
      openRunNode(name, shown);
    } else {
      showDefinition(name);
    }
  }

  // ---- a workflow page: the node's definition ----------------------------------------

  function showDefinition(name) {
    const row = document.querySelector('#nodes tr[data-node="' + CSS.escape(name) + '"]');
    const list = make("dl", { class: "panel-facts", id: "panel-facts" });
    function fact(label, key, value) {
      list.appendChild(make("dt", {}, label));
      const cell = make("dd", { "data-fact": key });
      if (value instanceof Node) {
        cell.appendChild(value);
      } else {
        cell.textContent = value || "—";
      }
      list.appendChild(cell);
    }
    function field(key) {
      const cell = row ? row.querySelector('[data-field="' + key + '"]') : null;
      return cell ? cell.textContent.trim() : "";
    }
    function links(names) {
      const span = make("span", {});
      names.forEach(function (other, index) {
        if (index > 0) {
          span.appendChild(document.createTextNode(", "));
        }
        span.appendChild(nodeLink(other));
      });
      return names.length ? span : "";
    }
    fact("Type", "type", field("type"));
    fact("Queue", "queue", field("queue"));
    fact("Retries", "retries", field("retries"));
    fact("Timeout", "timeout", field("timeout") || "none");
    const tags = make("span", {});
    const tagCell = row ? row.querySelector('[data-field="tags"]') : null;
    for (const tag of tagCell ? tagCell.querySelectorAll(".tag") : []) {
      tags.appendChild(tag.cloneNode(true));
      tags.appendChild(document.createTextNode(" "));
    }
    fact("Tags", "tags", tags.childNodes.length ? tags : "");
    const up = data.edges.filter(function (e) { return e[1] === name; })
      .map(function (e) { return e[0]; });
    const down = data.edges.filter(function (e) { return e[0] === name; })
      .map(function (e) { return e[1]; });
    fact("Upstream", "upstream", links(up));
    fact("Downstream", "downstream", links(down));
    panel.appendChild(list);
  }

  // ---- a run page: the node's status, attempts and log -------------------------------

  const run = panel.dataset.run;
  const ATTEMPT_COLUMNS = ["#", "Status", "Started (UTC)", "Finished", "Exit", "Error",
                           "Spark"];

  function nodeUrl(name) {
    return "/runs/" + encodeURIComponent(run) + "/nodes/" + encodeURIComponent(name);
  }

  function statusBadge(status) {
    return make("span", { class: "status", "data-status": status }, status);
  }

  function showAttempt(table, attempt) {
    const body = table.tBodies[0];
    let row = body.querySelector('tr[data-attempt="' + attempt.number + '"]');
    if (!row) {
      for (const empty of body.querySelectorAll("tr:not([data-attempt])")) {
        empty.remove();
      }
      row = make("tr", { "data-attempt": String(attempt.number) });
      for (let i = 0; i < ATTEMPT_COLUMNS.length; i++) {
        row.appendChild(make("td", {}));
      }
      row.cells[1].appendChild(statusBadge(attempt.status));
      row.cells[5].className = "error";
      body.appendChild(row);
    }
    const status = row.cells[1].firstChild;
    status.dataset.status = attempt.status;
    status.textContent = attempt.status;
    row.cells[0].textContent = String(attempt.number);
    for (const [cell, time] of [[row.cells[2], attempt.started],
                                [row.cells[3], attempt.finished]]) {
      cell.textContent = time.replace(/^\d{4}-/, "").replace(/ UTC$/, "");  // 12-04 16:40:31
      cell.title = time;
      cell.className = "time";
    }
    row.cells[4].textContent = attempt.exit_code === null ? "" : String(attempt.exit_code);
    row.cells[5].textContent = attempt.error;
    row.cells[6].textContent = attempt.spark;
    if (attempt.spark) {
      table.classList.remove("no-spark");  // the column shows only when there is one
    }
  }

  function tickBox(name) {  // the node's box in the resume form (roles that may resume)
    return document.querySelector('#resume-form input[name="node"][value="' +
                                  CSS.escape(name) + '"]');
  }

  function openRunNode(name, ticket) {
    const status = statusBadge(
      (document.querySelector('tr[data-node="' + CSS.escape(name) + '"]') || box)
        .dataset.status || "");
    status.id = "panel-status";
    panel.querySelector(".panel-head h2").after(status);
    const facts = make("p", { class: "sub", id: "panel-facts" });
    panel.appendChild(facts);
    const resume = tickBox(name);
    if (resume) {
      const label = make("label", { class: "panel-tick" });
      const tick = make("input", { type: "checkbox", id: "panel-tick" });
      tick.checked = resume.checked;
      tick.addEventListener("change", function () {
        resume.checked = tick.checked;
        // graph.js marks the node ticked
        resume.dispatchEvent(new Event("change", { bubbles: true }));
      });
      label.appendChild(tick);
      label.appendChild(document.createTextNode(" Tick for resume"));
      panel.appendChild(label);
    }
    panel.appendChild(make("h3", {}, "Attempts"));
    const table = make("table", { class: "list no-spark", id: "panel-attempts" });
    const headRow = make("tr", {});
    for (const column of ATTEMPT_COLUMNS) {
      headRow.appendChild(make("th", {}, column));
    }
    table.appendChild(make("thead", {})).appendChild(headRow);
    const body = table.appendChild(make("tbody", {}));
    const loading = body.appendChild(make("tr", {}));
    loading.appendChild(make("td", { colspan: String(ATTEMPT_COLUMNS.length) }, "Loading…"));
    panel.appendChild(table);
    panel.appendChild(make("h3", {}, "Log"));
    const text = make("pre", { class: "log", id: "panel-log" });
    panel.appendChild(text);

    fetch(nodeUrl(name) + "?format=json", { credentials: "same-origin",
                                            headers: { Accept: "application/json" } })
      .then(function (answer) {
        if (!answer.ok) {
          throw new Error("the node's data: HTTP " + answer.status);
        }
        return answer.json();
      })
      .then(function (node) {
        if (ticket !== shown) {
          return;  // another node was opened meanwhile
        }
        status.dataset.status = node.status;
        status.textContent = node.status;
        facts.replaceChildren();
        facts.appendChild(document.createTextNode("queue " + node.queue));
        if (node.copied_from) {
          facts.appendChild(document.createTextNode(" · copied from "));
          facts.appendChild(make("a", { href: "/runs/" + encodeURIComponent(node.copied_from),
                                        class: "copied" }, node.copied_from));
        }
        if (node.skip_reason) {
          facts.appendChild(document.createTextNode(" · " + node.skip_reason));
        }
        facts.appendChild(document.createTextNode(" · "));
        facts.appendChild(make("a", { href: nodeUrl(name), id: "panel-page" },
                               "the node's page"));
        body.replaceChildren();
        table.dataset.loaded = "yes";
        for (const attempt of node.attempts) {
          showAttempt(table, attempt);
        }
        if (!node.attempts.length) {
          const none = body.appendChild(make("tr", {}));
          none.appendChild(make("td", { colspan: String(ATTEMPT_COLUMNS.length) },
                                "No attempt yet."));
        }
        if (node.attempts.length || !node.run_finished) {
          followLog(name, text);
        } else {
          text.dataset.ended = "yes";
        }
      })
      .catch(function (error) {
        if (ticket === shown) {
          facts.textContent = String(error.message || error);
          facts.classList.add("problem");
        }
      });
  }

  function followLog(name, text) {
    // the node page's stream: the latest attempt's last 64 KiB, then followed to its end;
    // a later attempt's (a retry) goes on below the previous one's
    stopLog();
    if (text.dataset.attempt) {
      const before = text.textContent;
      text.textContent += (before && !before.endsWith("\n") ? "\n" : "") +
        "── attempt " + newest + " ──\n";
    }
    delete text.dataset.ended;
    let reached = null;  // the byte offset after the text shown: a page shown again goes on
                         // from there; null until this stream's first text
    const url = nodeUrl(name) + "/log";
    const stream = window.flowplanStreams.follow(function () {
      return reached === null ? url :
        url + "?attempt=" + text.dataset.attempt + "&offset=" + reached;
    }, {
      log: function (message) {
        const chunk = JSON.parse(message.data);
        text.dataset.attempt = String(chunk.attempt);
        reached = message.lastEventId;
        const atEnd = text.scrollTop + text.clientHeight >= text.scrollHeight - 4;
        text.textContent += chunk.text;
        if (atEnd) {
          text.scrollTop = text.scrollHeight;
        }
      },
      end: function () {
        stream.close();
        if (log !== stream) {
          return;
        }
        log = null;
        text.dataset.ended = "yes";
        // a retry started while this attempt's log was read (a stream that showed nothing
        // does not go round again: the latest attempt may have written nothing)
        if (reached !== null && newest > Number(text.dataset.attempt || 0)) {
          followLog(name, text);
        }
      },
    });
    log = stream;
  }

  document.addEventListener("flowplan:changes", function (event) {
    if (kind === "run" && current !== null) {
      for (const change of event.detail) {
        if (change.node && change.node.name === current) {
          showChange(change);
        }
      }
    }
  });
  function showChange(change) {
    const status = document.getElementById("panel-status");
    if (status) {
      status.dataset.status = change.node.status;
      status.textContent = change.node.status;
    }
    const table = document.getElementById("panel-attempts");
    const attempt = change.node.attempt;
    if (table && attempt && table.dataset.loaded === "yes") {
      for (const each of (change.node.earlier || []).concat([attempt])) {
        showAttempt(table, each);
      }
    }
    // a new attempt (a retry) once the previous one's log has ended: follow the new one
    // (one that ended already too: a page shown again catches up on what it missed)
    const text = document.getElementById("panel-log");
    if (attempt) {
      newest = Math.max(newest, attempt.number);
      if (text && log === null && Number(text.dataset.attempt || 0) < attempt.number) {
        followLog(current, text);
      }
    }
  }

  // the node's box in the table ticked or unticked: the panel's box follows
  document.addEventListener("change", function (event) {
    const resume = event.target;
    const tick = document.getElementById("panel-tick");
    if (tick && resume.matches('#resume-form input[name="node"]') && resume.value === current) {
      tick.checked = resume.checked;
    }
  });

  // ---- opening and closing -----------------------------------------------------------

  document.addEventListener("flowplan:node-click", function (event) {
    open(event.detail.name);
  });
  panel.addEventListener("click", function (event) {
    const link = event.target.closest("a[data-open]");
    if (link) {
      event.preventDefault();
      open(link.dataset.open);
    }
  });
  // a node's name in the table opens the panel; with a modifier key, its own page
  for (const link of document.querySelectorAll("tr[data-node] a.node-link")) {
    link.addEventListener("click", function (event) {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey ||
          event.altKey) {
        return;
      }
      event.preventDefault();
      open(link.closest("tr[data-node]").dataset.node);
      panel.scrollIntoView({ block: "nearest" });
    });
  }
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && current !== null) {
      close();
    }
  });
  window.addEventListener("hashchange", function () {
    const name = fromHash();
    if (name === null) {
      if (current !== null) {
        close();
      }
    } else if (name !== current) {
      open(name);
    }
  });
  window.addEventListener("pagehide", stopLog);
  const initial = fromHash();
  if (initial !== null) {
    open(initial);
  }
})();

// flowplan console: the run page's Gantt timeline of its attempts, drawn as SVG from
// #timeline's data-timeline ({now, nodes: [{name, attempts: [{number, status,
// started_time, finished_time}]}]}, times in seconds since the epoch). One row per node
// that ran in this run (copied attempts ran in another run), one bar per attempt from its
// start to its end, a running one growing to now; coloured by the attempt's status as the
// graph is. Kept current by the run's change events (console.js's "flowplan:changes"). The
// rows scroll under a fixed time axis, so a run of 1,000 nodes stays usable. A click on a
// row opens the node's panel (panel.js).
"use strict";

(function () {
  const box = document.getElementById("timeline");
  if (!box) {
    return;
  }
  const SVG = "http://www.w3.org/2000/svg";
  const LABEL = 170;  // px for the node names
  const ROW = 20;
  const BAR = 12;
  const AXIS = 24;
  const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                 21600, 43200, 86400];
  const data = JSON.parse(box.dataset.timeline);
  const skew = data.now - Date.now() / 1000;  // the daemon's clock, not the browser's
  const order = [];  // node names in the run's order
  const attempts = new Map();  // name -> [{number, status, started_time, finished_time}]
  for (const node of data.nodes) {
    order.push(node.name);
    attempts.set(node.name, node.attempts.slice());
  }
  let ended = document.querySelector("[data-watch-run]") === null ||
    document.querySelector("[data-watch-run]").dataset.finished === "yes";
  let timer = null;
  let queued = false;
  let drawnAt = -Infinity;
  const PACE = 250;

  function make(tag, attributes, text) {
    const element = document.createElementNS(SVG, tag);
    for (const key in attributes) {
      element.setAttribute(key, attributes[key]);
    }
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  function now() {
    return Date.now() / 1000 + skew;
  }

  function clock(seconds, withDate) {  // UTC, as the page's other times
    const text = new Date(seconds * 1000).toISOString();
    return withDate ? text.slice(5, 10) + " " + text.slice(11, 16) : text.slice(11, 19);
  }

  function span(seconds) {
    if (seconds < 60) {
      return (Math.round(seconds * 10) / 10) + " s";
    }
    const minutes = Math.floor(seconds / 60);
    return minutes < 60 ? minutes + " min " + Math.round(seconds % 60) + " s"
      : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  const axis = make("svg", { class: "timeline-axis", height: AXIS });
  const scroller = document.createElement("div");
  scroller.className = "timeline-rows";
  const rows = make("svg", { class: "timeline-svg" });
  const grid = make("g", {});  // the ticks' lines, under the rows
  const nowLine = make("line", { class: "timeline-now", y1: 0 });
  rows.append(grid);
  scroller.appendChild(rows);
  const empty = document.createElement("p");
  empty.className = "sub";
  empty.textContent = "No attempt yet.";
  box.replaceChildren(axis, scroller, empty);

  // A draw updates the elements drawn before, in place: a row's <g>, its label and its bars
  // are made once, and an attribute is written only when its value changes, so a draw while
  // a run runs costs a few attribute writes per row, not a new SVG (nor garbage to collect).
  const drawnRows = new Map();  // name -> {g, index, bars: Map(number -> {rect, title})}
  // The rows' width, kept by a ResizeObserver: reading clientWidth in a draw, after the
  // page's other writes of the frame, would force a layout of the whole page.
  let boxWidth = 0;
  if (window.ResizeObserver) {
    new ResizeObserver(function () {
      const width = scroller.clientWidth || box.clientWidth;
      if (width !== boxWidth) {
        boxWidth = width;
        later();
      }
    }).observe(scroller);
  }

  function set(element, key, value) {  // an attribute, written only when it changes
    const text = String(value);
    if (element.getAttribute(key) !== text) {
      element.setAttribute(key, text);
    }
  }

  function setText(element, text) {
    if (element.textContent !== text) {
      element.textContent = text;
    }
  }

  // A name longer than the label column is cut to fit it, by its width (a cut by characters
  // let wide letters run out of the box), with "…"; its <title> keeps it whole. Measured on a
  // canvas in .timeline-name's font, bold as on hover: no layout of the page per row.
  const measure = document.createElement("canvas").getContext("2d");
  measure.font = "600 12px system-ui, sans-serif";

  function fitted(name) {
    const room = LABEL - 16;
    if (measure.measureText(name).width <= room) {
      return name;
    }
    let low = 0;
    let high = name.length;  // the longest start that fits is in [low, high)
    while (high - low > 1) {
      const middle = (low + high) >> 1;
      if (measure.measureText(name.slice(0, middle) + "…").width <= room) {
        low = middle;
      } else {
        high = middle;
      }
    }
    return name.slice(0, low) + "…";
  }

  function rowOf(name) {
    let drawn = drawnRows.get(name);
    if (!drawn) {
      // data-row, not data-node: g[data-node] is the graph's hook (console.js sets its
      // data-status to the node's; a bar's is its attempt's)
      const g = make("g", { class: "timeline-row", "data-row": name });
      const label = make("text", { x: LABEL - 8, y: ROW / 2 + 4, class: "timeline-name" },
                         fitted(name));
      label.appendChild(make("title", {}, name));
      g.appendChild(label);
      drawn = { g: g, index: -1, bars: new Map() };
      drawnRows.set(name, drawn);
    }
    return drawn;
  }

  function draw() {
    queued = false;
    const began = performance.now();
    recordOwed();
    const shown = order.filter(function (name) { return attempts.get(name).length > 0; });
    empty.hidden = shown.length > 0;
    axis.style.display = scroller.style.display = shown.length ? "" : "none";
    box.dataset.rows = String(shown.length);
    if (shown.length === 0) {  // no attempt yet: no time range to draw
      box.dataset.drawn = "yes";
      return;
    }
    const time = now();
    let first = Infinity;
    let last = -Infinity;
    let running = false;
    for (const name of shown) {
      for (const attempt of attempts.get(name)) {
        first = Math.min(first, attempt.started_time);
        const end = attempt.finished_time === null ? time : attempt.finished_time;
        running = running || attempt.finished_time === null;
        last = Math.max(last, end, attempt.started_time);
      }
    }
    if (last - first < 1) {
      last = first + 1;
    }
    if (!boxWidth) {  // the first draw (or no ResizeObserver)
      boxWidth = scroller.clientWidth || box.clientWidth;
    }
    const width = Math.max(LABEL + 120, boxWidth);
    const plot = width - LABEL - 16;
    function x(seconds) {  // to a tenth of a pixel: a value drawn again is not rewritten
      return Math.round((LABEL + (seconds - first) / (last - first) * plot) * 10) / 10;
    }
    const step = STEPS.find(function (s) { return (last - first) / s <= plot / 90; }) ||
      STEPS[STEPS.length - 1];
    const withDate = last - first >= 86400;
    const ticks = [];
    for (let t = Math.ceil(first / step) * step; t <= last; t += step) {
      ticks.push(t);
    }
    const height = shown.length * ROW;
    // the axis and the grid: a few elements, made again
    set(axis, "width", width);
    const marks = [make("line", { class: "timeline-line", x1: LABEL, x2: LABEL + plot,
                                  y1: AXIS - 1, y2: AXIS - 1 })];
    for (const t of ticks) {
      marks.push(make("line", { class: "timeline-line", x1: x(t), x2: x(t), y1: AXIS - 6,
                                y2: AXIS - 1 }));
      const label = make("text", { x: x(t), y: AXIS - 9, class: "timeline-tick" },
                         clock(t, withDate));
      if (x(t) > width - 30) {
        label.setAttribute("text-anchor", "end");  // not cut by the right edge
      }
      marks.push(label);
    }
    marks.push(make("text", { x: 4, y: AXIS - 9, class: "timeline-caption" },
                    "UTC, " + span(last - first)));
    axis.replaceChildren.apply(axis, marks);
    grid.replaceChildren.apply(grid, ticks.map(function (t) {
      return make("line", { class: "timeline-grid", x1: x(t), x2: x(t), y1: 0, y2: height });
    }));

    set(rows, "width", width);
    set(rows, "height", height);
    const keep = new Set(shown);
    for (const [name, drawn] of drawnRows) {
      if (!keep.has(name)) {
        drawn.g.remove();
        drawnRows.delete(name);
      }
    }
    let before = grid.nextSibling;  // the rows in order, after the grid
    shown.forEach(function (name, index) {
      const drawn = rowOf(name);
      if (drawn.index !== index) {
        drawn.index = index;
        drawn.g.setAttribute("transform", "translate(0," + index * ROW + ")");
      }
      if (drawn.g !== before) {
        rows.insertBefore(drawn.g, before);
      } else {
        before = before.nextSibling;
      }
      for (const attempt of attempts.get(name)) {
        const end = attempt.finished_time === null ? time : attempt.finished_time;
        const left = x(attempt.started_time);
        let bar = drawn.bars.get(attempt.number);
        if (!bar) {
          const rect = make("rect", { class: "bar", y: (ROW - BAR) / 2, height: BAR, rx: 2,
                                      "data-attempt": attempt.number });
          bar = { rect: rect, title: make("title", {}) };
          rect.appendChild(bar.title);
          drawn.g.appendChild(rect);
          drawn.bars.set(attempt.number, bar);
        }
        set(bar.rect, "x", left);
        set(bar.rect, "width", Math.max(2, Math.round((x(end) - left) * 10) / 10));
        set(bar.rect, "data-status", attempt.status);
        setText(bar.title, name + " attempt " + attempt.number + " " + attempt.status +
                ": " + clock(attempt.started_time, withDate) + " for " +
                span(end - attempt.started_time));
      }
    });
    if (running && !ended) {
      set(nowLine, "x1", x(time));
      set(nowLine, "x2", x(time));
      set(nowLine, "y2", height);
      if (rows.lastChild !== nowLine) {
        rows.appendChild(nowLine);  // over the rows
      }
      if (timer === null) {
        timer = setInterval(later, 1000);  // running bars grow to now
      }
    } else {
      nowLine.remove();
      if (timer !== null) {
        clearInterval(timer);
        timer = null;
      }
    }
    box.dataset.drawn = "yes";
    drawnAt = performance.now();
    box.dataset.drawMs = (drawnAt - began).toFixed(1);  // what a draw costs (bench/web.py)
    box.dataset.draws = String(Number(box.dataset.draws || 0) + 1);
  }

  // Out of view (below the fold, as on most screens), the timeline is not drawn again: it
  // is drawn when it comes into view (console.js's flowplanInView).
  let behind = false;  // a draw is owed for when it comes into view
  const inView = window.flowplanInView(box, function () {
    if (behind) {
      behind = false;
      later();
    }
  });

  function later() {  // at most one draw every PACE ms, however many changes come
    if (!inView()) {
      behind = true;
      return;
    }
    if (!queued) {
      queued = true;
      setTimeout(function () { requestAnimationFrame(draw); },
                 Math.max(0, drawnAt + PACE - performance.now()));
    }
  }

  function record(name, attempt) {
    if (attempt.copied_from || attempt.started_time === null) {
      return;
    }
    if (!attempts.has(name)) {
      order.push(name);
      attempts.set(name, []);
    }
    const list = attempts.get(name);
    const known = list.find(function (a) { return a.number === attempt.number; });
    const drawn = { number: attempt.number, status: attempt.status,
                    started_time: attempt.started_time, finished_time: attempt.finished_time };
    if (known) {
      Object.assign(known, drawn);
    } else {
      list.push(drawn);
      list.sort(function (a, b) { return a.number - b.number; });
    }
  }

  // Each node's latest state from its changes, recorded at the next draw: a node's change
  // carries all its attempts (the earlier ones in node.earlier), so the latest is enough,
  // and a timeline out of view records nothing until it is drawn.
  const owed = new Map();  // node name -> its latest state, not yet recorded
  function recordOwed() {
    for (const [name, node] of owed) {
      for (const attempt of (node.earlier || []).concat([node.attempt])) {
        record(name, attempt);
      }
    }
    owed.clear();
  }
  document.addEventListener("flowplan:changes", function (event) {
    for (const change of event.detail) {
      if (change.node && change.node.attempt) {
        owed.set(change.node.name, change.node);
      }
    }
    if (owed.size) {
      later();
    }
  });
  document.addEventListener("flowplan:end", function () {
    ended = true;
    later();
  });
  rows.addEventListener("click", function (event) {
    const row = event.target.closest("g.timeline-row");
    if (row) {
      document.dispatchEvent(new CustomEvent("flowplan:node-click",
                                             { detail: { name: row.dataset.row } }));
    }
  });
  window.addEventListener("resize", function () {
    boxWidth = 0;  // read again at the next draw
    later();
  });
  // The first draw comes after the page's first frame, so the graph above it shows first:
  // a 1,000-row timeline's script and layout held that frame back (bench/web.py).
  requestAnimationFrame(function () { setTimeout(draw, 0); });
})();

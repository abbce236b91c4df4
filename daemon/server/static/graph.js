// flowplan console: draws the graph of #graph's data-graph ({nodes: [{name, status}],
// edges: [[upstream, downstream]]}) as SVG, laid out by layout.js (the vendored d3-dag,
// layered, top to bottom). Each node is a <g data-node="NAME" data-status="STATUS">:
// console.js keeps data-status current and the style sheet colours it. Wheel zooms,
// dragging pans, the "Fit" button fits the graph to the view, the search box highlights the
// nodes whose name has the text typed and brings the first (or the one of exactly that name)
// to the middle, readable; a click on a node dispatches "flowplan:node-click" (panel.js opens the
// node's panel). A large graph's layout comes with the page when the daemon keeps one
// (data-daemon-layout; the daemon lays large graphs out itself, console/layouter.py); else
// it is kept in the tab's sessionStorage for a view again, and sent to the daemon
// (data-layout-url) for every later view, by anyone (see computeLayout).
//
// The pages load it (and layout.js) right after #graph, not deferred: with a layout in
// the page it draws at once, before the parser reaches the rest of the page (a 1,000-node
// run's timeline and node table, most of its HTML). A layout to compute waits for the page
// to be parsed: the deferred d3-dag has run by then.
"use strict";

(function () {
  const box = document.getElementById("graph");
  if (!box || !window.flowplanLayout) {
    return;
  }
  performance.mark("flowplan-graph-start");
  const data = JSON.parse(box.dataset.graph);
  const SVG = "http://www.w3.org/2000/svg";
  const BIG = flowplanLayout.BIG;  // nodes: above, a stored layout (and the daemon's)
  const STORED_LAYOUTS = 20;
  const LABEL_PX = 12;  // a label's font size in the drawing (console.css: g.gnode text)
  const LABEL_MIN_PX = 5;  // on screen, below which labels are left out
  const INDEX = "flowplan-layouts";  // the stored layouts' keys, oldest first
  const LAYOUT_VERSION = flowplanLayout.VERSION;
  const key = layoutKey(data);
  const ready = daemonLayout(data) || storedLayout(key, data);
  if (ready) {
    draw(ready, false);
  } else if (!box.dataset.layoutWait) {
    drawComputed();
  } else {
    // The daemon is laying this graph out (it began when it loaded the plan version): its
    // layout comes as soon as it is kept, fetched while the rest of this page loads; else
    // (not within the daemon's bound, or it failed) this page lays the graph out itself.
    fetch(box.dataset.layoutUrl, { credentials: "same-origin" })
      .then(function (answer) { return answer.status === 200 ? answer.json() : null; })
      .catch(function () { return null; })
      .then(function (kept) {
        if (fits(kept, data)) {
          box.dataset.layout = "daemon";
          draw(kept, true);
        } else {
          drawComputed();
        }
      });
  }

  function parsed(callback) {  // once the page is parsed (and its deferred scripts ran)
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", callback);
    } else {
      callback();
    }
  }

  function drawComputed() {  // d3-dag is deferred: it has run once the page is parsed
    parsed(function () {
      if (window.d3) {
        draw(computeLayout(key, data), true);
      }
    });
  }

  function make(tag, attributes) {
    const element = document.createElementNS(SVG, tag);
    for (const key in attributes) {
      element.setAttribute(key, attributes[key]);
    }
    return element;
  }

  // Draws `layout`; `late`: not as the parser reached this script (a layout fetched or
  // computed), so the nodes take the statuses the page's table shows now, as far as it is
  // parsed (console.js keeps them current once the page is parsed).
  function draw(layout, late) {
    performance.mark("flowplan-graph-laid-out");
    const statuses = new Map();
    if (late) {
      for (const row of document.querySelectorAll("#run-nodes tr[data-node][data-status]")) {
        statuses.set(row.dataset.node, row.dataset.status);
      }
    }
    const svg = make("svg", { class: "graph-svg", role: "img" });
    const world = make("g", {});
    svg.appendChild(world);
    // The edges as one path, an "M x,y L x,y ..." each: one element to style and paint
    // rather than one per edge (2,043 in the 1,000-node bench graph).
    const lines = [];
    for (const id in layout.edges) {
      const xy = layout.edges[id];
      const points = [];
      for (let i = 0; i < xy.length; i += 2) {
        points.push(xy[i] + "," + xy[i + 1]);
      }
      lines.push("M" + points.join("L"));
    }
    world.appendChild(make("path", { class: "edges", d: lines.join("") }));
    for (const node of data.nodes) {
      const at = layout.nodes[node.name];  // [left, top, width, height]
      const group = make("g", { class: "gnode", "data-node": node.name,
                                transform: "translate(" + at[0] + "," + at[1] + ")" });
      const status = statuses.get(node.name) || node.status;
      if (status) {
        group.setAttribute("data-status", status);
      }
      group.appendChild(make("rect", { width: at[2], height: at[3], rx: 4 }));
      const label = make("text", { x: at[2] / 2, y: at[3] / 2 + 4 });
      label.textContent = node.name;
      group.appendChild(label);
      const title = make("title", {});  // the name only: a status here would go stale
      title.textContent = node.name;
      group.appendChild(title);
      world.appendChild(group);
    }

    // The box's size (set by the style sheet, not by the drawing) is read and the view set
    // before the drawing goes in: read after, it made the browser lay the whole drawing
    // out at once, then again in the frame for the new viewBox. The 1,000-node bench graph
    // draws ~30 ms sooner so on a slow machine (its SVG built ~95 ms sooner, its frame
    // ~40 ms longer; 6 loads each).
    const size = { width: layout.width, height: layout.height };
    let view = { x: 0, y: 0, w: size.width || 1, h: size.height || 1 };
    let boxSize = { w: box.clientWidth, h: box.clientHeight };
    function show() {
      svg.setAttribute("viewBox", [view.x, view.y, view.w, view.h].join(" "));
      // Labels shown smaller than LABEL_MIN_PX cannot be read: they are left out (a large
      // graph fitted to the box), so a status change repaints a box, not the text over it,
      // and a fitted 1,000-node graph is not 1,000 names a pixel high. They come back as
      // the graph is zoomed in.
      const scale = Math.min(boxSize.w / view.w, boxSize.h / view.h);
      svg.classList.toggle("far", LABEL_PX * scale < LABEL_MIN_PX);
    }
    let moved = false;  // by the user: zoomed or panned
    function fit() {  // the whole graph, never drawn larger than its natural size
      boxSize = { w: box.clientWidth, h: box.clientHeight };
      const w = Math.max(size.width || 1, boxSize.w);
      const h = Math.max(size.height || 1, boxSize.h);
      view = { x: ((size.width || 1) - w) / 2, y: ((size.height || 1) - h) / 2, w: w, h: h };
      show();
    }
    fit();
    box.appendChild(svg);
    // Drawn while the page is parsed: the rest of the page may change the box's size (a
    // scroll bar comes with it), so the graph is fitted again once the page is parsed,
    // unless the user moved it meanwhile.
    if (document.readyState === "loading") {
      parsed(function () {
        if (!moved) {
          fit();
        }
      });
    }
    // The box resized (a node's panel opened beside it): the same scale and centre, so the
    // drawing keeps its size rather than shrinking with the box.
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        const w = box.clientWidth;
        const h = box.clientHeight;
        if (!w || !h || !boxSize.w || !boxSize.h || (w === boxSize.w && h === boxSize.h)) {
          const shown = w && h && (w !== boxSize.w || h !== boxSize.h);
          boxSize = { w: w, h: h };
          if (shown) {
            show();  // shown at last: the labels' size on screen is known
          }
          return;
        }
        const cx = view.x + view.w / 2;
        const cy = view.y + view.h / 2;
        const sx = view.w / boxSize.w;
        const sy = view.h / boxSize.h;
        view = { x: cx - w * sx / 2, y: cy - h * sy / 2, w: w * sx, h: h * sy };
        boxSize = { w: w, h: h };
        show();
      }).observe(box);
    }
    svg.addEventListener("wheel", function (event) {
      event.preventDefault();
      const factor = event.deltaY > 0 ? 1.15 : 1 / 1.15;
      const rect = svg.getBoundingClientRect();
      const px = view.x + (event.clientX - rect.left) / rect.width * view.w;
      const py = view.y + (event.clientY - rect.top) / rect.height * view.h;
      view = { x: px - (px - view.x) * factor, y: py - (py - view.y) * factor,
               w: view.w * factor, h: view.h * factor };
      moved = true;
      show();
    }, { passive: false });
    let drag = null;
    svg.addEventListener("pointerdown", function (event) {
      if (event.target.closest("g.gnode")) {
        return;  // a node: clicked, not dragged
      }
      drag = { x: event.clientX, y: event.clientY, view: view };
      svg.setPointerCapture(event.pointerId);
    });
    svg.addEventListener("pointermove", function (event) {
      if (!drag) {
        return;
      }
      const rect = svg.getBoundingClientRect();
      view = { x: drag.view.x - (event.clientX - drag.x) / rect.width * drag.view.w,
               y: drag.view.y - (event.clientY - drag.y) / rect.height * drag.view.h,
               w: drag.view.w, h: drag.view.h };
      moved = true;
      show();
    });
    svg.addEventListener("pointerup", function () { drag = null; });
    const fitButton = document.getElementById("graph-fit");
    if (fitButton) {
      fitButton.addEventListener("click", fit);
    }
    const search = document.getElementById("graph-search");
    if (search) {
      search.addEventListener("input", function () {
        const wanted = search.value.trim().toLowerCase();
        let first = null;
        for (const group of svg.querySelectorAll("g.gnode")) {
          const hit = wanted !== "" && group.dataset.node.toLowerCase().includes(wanted);
          group.classList.toggle("found", hit);
          if (hit && (first === null || group.dataset.node.toLowerCase() === wanted)) {
            first = group;  // the first match, or the node of exactly that name
          }
        }
        if (first !== null) {  // brought to the middle, at least at its natural size
          const at = layout.nodes[first.dataset.node];
          boxSize = { w: box.clientWidth, h: box.clientHeight };
          const scale = Math.max(Math.min(boxSize.w / view.w, boxSize.h / view.h), 1);
          const w = boxSize.w / scale;
          const h = boxSize.h / scale;
          view = { x: at[0] + at[2] / 2 - w / 2, y: at[1] + at[3] / 2 - h / 2, w: w, h: h };
          moved = true;
          show();
        }
      });
    }
    // A click on a node opens its panel (panel.js listens); a node ticked for Resume (its
    // box in the table, or "Tick for resume" in the panel) is marked.
    svg.addEventListener("click", function (event) {
      const group = event.target.closest("g.gnode");
      if (group) {
        document.dispatchEvent(new CustomEvent("flowplan:node-click",
                                               { detail: { name: group.dataset.node } }));
      }
    });
    // (The boxes come after the graph in the page: not parsed yet when it is drawn early.)
    function marked(tick) {
      const group = svg.querySelector('g.gnode[data-node="' + CSS.escape(tick.value) + '"]');
      if (group) {
        group.classList.toggle("ticked", tick.checked);
      }
    }
    document.addEventListener("change", function (event) {
      if (event.target.matches('input[name="node"]')) {
        marked(event.target);
      }
    });
    parsed(function () {  // a box the browser kept ticked (back to the page)
      for (const tick of document.querySelectorAll('input[name="node"]')) {
        marked(tick);
      }
    });
    box.dataset.drawn = "yes";
    performance.mark("flowplan-graph-drawn");
    document.dispatchEvent(new CustomEvent("flowplan:graph-drawn"));  // panel.js marks
    if (box.dataset.layoutUrl && box.dataset.layout !== "daemon") {
      // When idle (within 1 s even in a background tab): not in the first frame's way.
      const send = function () { sendLayout(layout); };
      if (window.requestIdleCallback) {
        requestIdleCallback(send, { timeout: 1000 });
      } else {
        setTimeout(send, 0);
      }
    }
  }

  // The layout: the daemon's, or the one this tab stored for the same nodes and edges, or
  // layout.js's. A graph's layout never changes (a plan version's graph is fixed), and a
  // large one is dear (~0.85 s at 1,000 nodes on a slow machine), so the daemon keeps the first
  // one computed (its own, or one sent) for every later page of that graph (by anyone), and
  // the tab keeps it in sessionStorage (gone when the tab closes) for when the daemon has
  // none.
  function computeLayout(key, data) {
    const result = flowplanLayout.compute(data);  // layout.js: the daemon runs it too
    box.dataset.layout = "computed";
    if (data.nodes.length > BIG) {
      storeLayout(key, result);
    }
    return result;
  }

  function layoutKey(data) {  // FNV-1a of the nodes and edges (and the layout's version)
    let hash = 0x811c9dc5;
    let length = 0;
    function add(text) {
      for (let i = 0; i < text.length; i++) {
        hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
      }
      length += text.length + 1;
    }
    add(LAYOUT_VERSION);
    for (const node of data.nodes) {
      add(node.name);
    }
    for (const edge of data.edges) {
      add(edge[0] + "\u0000" + edge[1]);
    }
    return "flowplan-layout-" + (hash >>> 0).toString(36) + "-" + length.toString(36);
  }

  function fits(layout, data) {  // a layout of exactly these nodes and edges
    if (!layout || !layout.nodes || !layout.edges ||
        Object.keys(layout.nodes).length !== data.nodes.length) {
      return false;
    }
    const edges = new Set();
    for (const edge of data.edges) {
      edges.add(edge[0] + "\u0000" + edge[1]);
    }
    return Object.keys(layout.edges).length === edges.size &&
      data.nodes.every(function (node) { return Object.hasOwn(layout.nodes, node.name); }) &&
      [...edges].every(function (edge) { return Object.hasOwn(layout.edges, edge); });
  }

  // The daemon's layout of this graph (checked by the daemon against the same graph; checked
  // here again, so a mismatch is laid out anew rather than drawn wrong).
  function daemonLayout(data) {
    let kept = null;
    try {
      kept = JSON.parse(box.dataset.daemonLayout || "null");
    } catch (error) {
      return null;
    }
    if (!fits(kept, data)) {
      return null;
    }
    box.dataset.layout = "daemon";
    return kept;
  }

  function storedLayout(key, data) {  // null unless stored for exactly these nodes and edges
    let stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(key) || "null");
    } catch (error) {
      return null;  // no storage (a privacy setting), or not JSON
    }
    if (!fits(stored, data)) {
      return null;
    }
    box.dataset.layout = "stored";
    return stored;
  }

  // The layout drawn, to the daemon, which keeps the first one it gets for this graph (any
  // role may send it, with the session's CSRF token): data-layout-saved says "yes" (kept),
  // "kept" (it had one already), "daemon" (the daemon lays this graph out itself and keeps
  // only its own) or "no".
  function sendLayout(layout) {
    const form = new FormData();
    form.append("csrf", box.dataset.csrf || "");
    form.append("layout", JSON.stringify({ width: layout.width, height: layout.height,
                                           nodes: layout.nodes, edges: layout.edges }));
    fetch(box.dataset.layoutUrl, { method: "POST", body: form, credentials: "same-origin" })
      .then(function (answer) {
        box.dataset.layoutSaved = answer.status === 201 ? "yes" :
          answer.status === 200 ? "kept" : answer.status === 202 ? "daemon" : "no";
      }, function () { box.dataset.layoutSaved = "no"; });
  }

  function storeLayout(key, layout) {  // the newest STORED_LAYOUTS, the oldest dropped
    try {
      const keys = JSON.parse(sessionStorage.getItem(INDEX) || "[]").filter(function (k) {
        return k !== key;
      });
      keys.push(key);
      const text = JSON.stringify(layout);
      for (;;) {
        while (keys.length > STORED_LAYOUTS) {
          sessionStorage.removeItem(keys.shift());
        }
        try {
          sessionStorage.setItem(key, text);
          break;
        } catch (full) {  // over the quota: drop the oldest other layout, or give up
          if (keys.length <= 1) {
            return;
          }
          sessionStorage.removeItem(keys.shift());
        }
      }
      sessionStorage.setItem(INDEX, JSON.stringify(keys));
    } catch (error) {
      // no storage: the next view lays the graph out again
    }
  }
})();

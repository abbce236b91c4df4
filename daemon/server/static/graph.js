// flowplan console: draws the graph of #graph's data-graph ({nodes: [{name, status}],
// edges: [[upstream, downstream]]}) as SVG, laid out by the vendored dagre (layered,
// top to bottom). Each node is a <g data-node="NAME" data-status="STATUS">: console.js keeps
// data-status current and the style sheet colours it. Wheel zooms, dragging pans, the
// "Fit" button fits the graph to the view, the search box highlights a node by name; a
// click on a node dispatches "flowplan:node-click" (panel.js opens the node's panel).
"use strict";

(function () {
  const box = document.getElementById("graph");
  if (!box || !window.dagre) {
    return;
  }
  const data = JSON.parse(box.dataset.graph);
  const SVG = "http://www.w3.org/2000/svg";
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "TB", nodesep: 24, ranksep: 40, marginx: 8, marginy: 8 });
  graph.setDefaultEdgeLabel(function () { return {}; });
  for (const node of data.nodes) {
    graph.setNode(node.name, { width: Math.max(60, 8 * node.name.length + 20), height: 30 });
  }
  for (const edge of data.edges) {
    graph.setEdge(edge[0], edge[1]);
  }
  dagre.layout(graph);

  function make(tag, attributes) {
    const element = document.createElementNS(SVG, tag);
    for (const key in attributes) {
      element.setAttribute(key, attributes[key]);
    }
    return element;
  }

  const svg = make("svg", { class: "graph-svg", role: "img" });
  const world = make("g", {});
  svg.appendChild(world);
  for (const id of graph.edges()) {
    const points = graph.edge(id).points.map(function (p) { return p.x + "," + p.y; });
    world.appendChild(make("polyline", { class: "edge", points: points.join(" ") }));
  }
  for (const node of data.nodes) {
    const at = graph.node(node.name);
    const group = make("g", { class: "gnode", "data-node": node.name,
                              transform: "translate(" + (at.x - at.width / 2) + "," +
                                (at.y - at.height / 2) + ")" });
    if (node.status) {
      group.setAttribute("data-status", node.status);
    }
    group.appendChild(make("rect", { width: at.width, height: at.height, rx: 4 }));
    const label = make("text", { x: at.width / 2, y: at.height / 2 + 4 });
    label.textContent = node.name;
    group.appendChild(label);
    const title = make("title", {});
    title.textContent = node.name + (node.status ? " " + node.status : "");
    group.appendChild(title);
    world.appendChild(group);
  }
  box.appendChild(svg);

  const size = graph.graph();
  let view = { x: 0, y: 0, w: size.width || 1, h: size.height || 1 };
  function show() {
    svg.setAttribute("viewBox", [view.x, view.y, view.w, view.h].join(" "));
  }
  function fit() {  // the whole graph, never drawn larger than its natural size
    const w = Math.max(size.width || 1, box.clientWidth);
    const h = Math.max(size.height || 1, box.clientHeight);
    view = { x: ((size.width || 1) - w) / 2, y: ((size.height || 1) - h) / 2, w: w, h: h };
    show();
  }
  fit();
  // The box resized (a node's panel opened beside it): the same scale and centre, so the
  // drawing keeps its size rather than shrinking with the box.
  let boxSize = { w: box.clientWidth, h: box.clientHeight };
  if (window.ResizeObserver) {
    new ResizeObserver(function () {
      const w = box.clientWidth;
      const h = box.clientHeight;
      if (!w || !h || !boxSize.w || !boxSize.h || (w === boxSize.w && h === boxSize.h)) {
        boxSize = { w: w, h: h };
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
      for (const group of svg.querySelectorAll("g.gnode")) {
        const hit = wanted !== "" && group.dataset.node.toLowerCase().includes(wanted);
        group.classList.toggle("found", hit);
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
  for (const tick of document.querySelectorAll('input[name="node"]')) {
    const marked = function () {
      const group = svg.querySelector('g.gnode[data-node="' + CSS.escape(tick.value) + '"]');
      if (group) {
        group.classList.toggle("ticked", tick.checked);
      }
    };
    tick.addEventListener("change", marked);
    marked();  // a box the browser kept ticked (back to the page)
  }
  box.dataset.drawn = "yes";
})();

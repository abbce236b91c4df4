// flowplan console: a graph's layout by the vendored dagre (layered, top to bottom), the one
// definition of it. The browser loads it after dagre and before graph.js, which draws what it
// returns; the daemon runs the same two files in its embedded V8 (console/layouter.py), so a
// layout the daemon computes is the one a browser would. Defines the global flowplanLayout:
//   BIG      nodes: above, the tight-tree ranker, and the daemon keeps the layout
//            (BIG in console/layouts.py);
//   VERSION  part of every layout's key: change it when the options below change
//            (and LAYOUT_VERSION in console/layouts.py);
//   compute(data)  data: {nodes: [{name}], edges: [[upstream, downstream]]} in page order;
//            returns {width, height, nodes: {NAME: [left, top, width, height]},
//            edges: {"UP\u0000DOWN": [x1, y1, x2, y2, ...]}}, positions rounded to 0.1 px.
"use strict";

var flowplanLayout = (function () {
  const BIG = 200;

  function compute(data) {
    const graph = new dagre.graphlib.Graph();
    // Network simplex (dagre's default ranker, the shortest edges) grows as nodes x edges:
    // with it, a layered graph of 1,000 nodes and 2,000 edges like bench/web.py's took 5.6 s
    // to lay out, with tight-tree 0.65 s (the same ranks there).
    graph.setGraph({ rankdir: "TB", nodesep: 24, ranksep: 40, marginx: 8, marginy: 8,
                     ranker: data.nodes.length > BIG ? "tight-tree" : "network-simplex" });
    graph.setDefaultEdgeLabel(function () { return {}; });
    for (const node of data.nodes) {
      graph.setNode(node.name, { width: Math.max(60, 8 * node.name.length + 20), height: 30 });
    }
    for (const edge of data.edges) {
      graph.setEdge(edge[0], edge[1]);
    }
    dagre.layout(graph);
    const size = graph.graph();
    const result = { width: size.width, height: size.height, nodes: Object.create(null),
                     edges: Object.create(null) };
    for (const node of data.nodes) {
      const at = graph.node(node.name);
      result.nodes[node.name] = [Math.round((at.x - at.width / 2) * 10) / 10,
                                 Math.round((at.y - at.height / 2) * 10) / 10, at.width,
                                 at.height];
    }
    for (const id of graph.edges()) {
      const xy = [];
      for (const point of graph.edge(id).points) {
        xy.push(Math.round(point.x * 10) / 10, Math.round(point.y * 10) / 10);
      }
      result.edges[id.v + "\u0000" + id.w] = xy;
    }
    return result;
  }

  return Object.freeze({ BIG: BIG, VERSION: "1", compute: compute });
})();

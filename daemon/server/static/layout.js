// flowplan console: a graph's layout by the vendored d3-dag (Sugiyama: layered, top to
// bottom), the one definition of it. The browser loads it after d3-dag and before
// graph.js, which draws what it returns; the daemon runs the same two files in its
// embedded V8 (console/layouter.py), so a layout the daemon computes is the one a browser
// would. Defines the global flowplanLayout:
//   BIG      nodes: above, the faster settings below, and the daemon keeps the layout
//            (BIG in console/layouts.py);
//   VERSION  part of every layout's key: change it when the settings below change
//            (and LAYOUT_VERSION in console/layouts.py);
//   compute(data)  data: {nodes: [{name}], edges: [[upstream, downstream]]} in page order;
//            returns {width, height, nodes: {NAME: [left, top, width, height]},
//            edges: {"UP\u0000DOWN": [x1, y1, x2, y2, ...]}}, positions rounded to 0.1 px;
//            an edge runs from its upstream's centre to its downstream's (the boxes are
//            drawn over the ends).
"use strict";

var flowplanLayout = (function () {
  const BIG = 200;
  const MARGIN = 8;
  const HEIGHT = 30;

  function width(name) {
    return Math.max(60, 8 * name.length + 20);
  }

  // The settings, measured in the same V8 against dagre 0.8.5 (flowplan's engine before):
  // crossings are ordered by two-layer sweeps, 4 of them (d3-dag's default 24 cost 3-6x
  // the time for <1% fewer crossings), and nodes placed by greedy coordinates (d3-dag's
  // default, a linear program, took 1.3 s at 200 nodes). Up to BIG nodes the layers come
  // from network simplex (the shortest edges); above, from the longest path, with one
  // ordering start and 2 sweeps: bench/web.py's graph of 1,000 nodes and 2,043 edges then
  // takes ~0.3 s and has 13,280 crossings, where dagre took ~1.6 s for 14,742 (simplex
  // layers alone would add ~0.25 s). topDown(false): with true, d3-dag 1.2.2 lines each
  // connected part's last layer up with the deepest part's, so a part with fewer layers
  // hangs at the bottom of the drawing instead of starting at its top.
  function layout(count) {
    if (count <= BIG) {
      return d3.sugiyama().layering(d3.layeringSimplex())
        .decross(d3.decrossTwoLayer().passes(4));
    }
    return d3.sugiyama().layering(d3.layeringLongestPath().topDown(false))
      .decross(d3.decrossTwoLayer().passes(2).inits([d3.decrossDfs()]));
  }

  function round(value) {
    return Math.round((value + MARGIN) * 10) / 10;
  }

  function compute(data) {
    const graph = d3.graph();
    const byName = new Map();
    for (const node of data.nodes) {
      byName.set(node.name, graph.node(node.name));
    }
    for (const edge of data.edges) {
      graph.link(byName.get(edge[0]), byName.get(edge[1]));
    }
    const size = layout(data.nodes.length)
      .coord(d3.coordGreedy())
      .nodeSize(function (node) { return [width(node.data), HEIGHT]; })
      .gap([24, 40])(graph);
    const result = { width: size.width + 2 * MARGIN, height: size.height + 2 * MARGIN,
                     nodes: Object.create(null), edges: Object.create(null) };
    for (const node of data.nodes) {
      const at = byName.get(node.name);
      const wide = width(node.name);
      result.nodes[node.name] = [round(at.x - wide / 2), round(at.y - HEIGHT / 2), wide,
                                 HEIGHT];
    }
    for (const link of graph.links()) {
      const xy = [];
      for (const point of link.points) {
        xy.push(round(point[0]), round(point[1]));
      }
      result.edges[link.source.data + "\u0000" + link.target.data] = xy;
    }
    return result;
  }

  return Object.freeze({ BIG: BIG, VERSION: "2", compute: compute });
})();

(function () {
"use strict";
var s = document.currentScript;
var root = (s && s.closest && s.closest(".lc-explorer")) || document.getElementById("__ID__");
if (!root) return;
var D = JSON.parse(root.querySelector("script.lc-data").textContent);
var NS = "http://www.w3.org/2000/svg";
var state = D.axes.map(function (a) { return a.init; });
function lookup(col, st) {
  var i = 0;
  col.d.forEach(function (a) { i = i * D.axes[a].n + st[a]; });
  return col.v[i];
}
function num(key, st) { return lookup(D.num[key], st); }
function moved(axis, i) { var st = state.slice(); st[axis] = i; return st; }
function scale(dom, lo, hi, log) {
  var f = log ? Math.log : Number, a = f(dom[0]), span = (f(dom[1]) - a) || 1;
  return function (v) {
    var t = (f(log && !(v > 0) ? dom[0] : v) - a) / span;
    return +(lo + Math.max(-0.05, Math.min(1.05, t)) * (hi - lo)).toFixed(1);
  };
}
function add(parent, tag, attrs, text) {
  var e = document.createElementNS(NS, tag);
  Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
  if (text !== undefined) e.textContent = text;
  parent.appendChild(e);
  return e;
}
function hline(g, c, y, x1, x2, cls) {
  add(g, "line", {x1: x1, x2: x2, y1: y, y2: y, "class": cls});
}
function setup(svg, c) {
  var b = c.box, g = svg.querySelector(".lc-axes");
  c.layer = svg.querySelector(".lc-layer");
  c.sy = scale(c.ydom, b[3], b[1], c.logy);
  c.yticks.forEach(function (t) {
    var y = c.sy(t[0]);
    hline(g, c, y, b[0], b[2], "lc-grid");
    add(g, "text", {x: b[0] - 6, y: y + 4, "text-anchor": "end"}, t[1]);
  });
  if (c.type === "line") {
    c.sx = scale(c.xdom, b[0] + 4, b[2] - 4, c.logx);
    c.xticks.forEach(function (t) {
      var x = c.sx(t[0]);
      add(g, "line", {x1: x, x2: x, y1: b[1], y2: b[3], "class": "lc-grid"});
      add(g, "text", {x: x, y: b[3] + 18, "text-anchor": "middle"}, t[1]);
    });
  } else {
    c.n = c.x < 0 ? 1 : D.axes[c.x].n;
    c.band = (b[2] - b[0]) / c.n;
    c.w = Math.min(c.band * 0.55, 70);
    if (c.x >= 0) D.axes[c.x].labels.forEach(function (lab, i) {
      add(g, "text", {x: b[0] + c.band * (i + 0.5), y: b[3] + 18, "text-anchor": "middle"}, lab);
    });
  }
}
function drawLine(c) {
  var ax = D.axes[c.x], x = c.sx(ax.values[state[c.x]]);
  c.y.forEach(function (key, k) {
    var d = "", pen = "M";  // a null value is a gap: the line lifts and starts again after it
    ax.values.forEach(function (v, i) {
      var y = num(key, moved(c.x, i));
      if (y === null) { pen = "M"; return; }
      d += pen + c.sx(v) + "," + c.sy(y);
      pen = "L";
    });
    if (d) add(c.layer, "path", {d: d, fill: "none", stroke: c.colors[k],
      "stroke-width": 2.2, "class": "lc-series"});
  });
  if (c.cap) hline(c.layer, c, c.sy(num(c.cap, state)), c.box[0], c.box[2], "lc-capacity");
  add(c.layer, "line", {x1: x, x2: x, y1: c.box[1], y2: c.box[3], "class": "lc-guide"});
  c.y.forEach(function (key, k) {
    if (num(key, state) !== null) add(c.layer, "circle", {cx: x, cy: c.sy(num(key, state)),
      r: 4.5, fill: c.colors[k], "class": "lc-marker"});
  });
}
function drawBars(c) {
  for (var i = 0; i < c.n; i++) {
    var st = c.x < 0 ? state : moved(c.x, i), x0 = c.box[0] + c.band * i + (c.band - c.w) / 2;
    var base = 0;
    c.y.forEach(function (key, k) {
      var v = num(key, st), y1 = c.sy(base), y2 = c.sy(base + v);
      add(c.layer, "rect", {x: x0, y: Math.min(y1, y2), width: c.w, height: Math.abs(y1 - y2),
        fill: c.colors[k], "class": "lc-bar"});
      base += v;
    });
    if (c.cap) hline(c.layer, c, c.sy(num(c.cap, st)), x0 - c.band * 0.18,
      x0 + c.w + c.band * 0.18, "lc-capacity");
    if (c.x >= 0 && i === state[c.x]) add(c.layer, "rect", {x: x0 - 3, y: c.sy(base) - 3,
      width: c.w + 6, height: c.sy(0) - c.sy(base) + 6, fill: "none", "class": "lc-marker"});
  }
}
var svgs = root.querySelectorAll("svg.lc-chart");
D.charts.forEach(function (c, i) { setup(svgs[i], c); });
function redraw() {
  root.querySelectorAll("[data-shows]").forEach(function (e) {
    var a = +e.getAttribute("data-shows");
    e.textContent = D.axes[a].labels[state[a]];
  });
  root.querySelectorAll(".lc-readout-value").forEach(function (e) {
    e.textContent = lookup(D.text[e.getAttribute("data-key")], state);
  });
  D.charts.forEach(function (c) {
    while (c.layer.firstChild) c.layer.removeChild(c.layer.firstChild);
    if (c.type === "line") drawLine(c); else drawBars(c);
  });
}
root.querySelectorAll("[data-axis]").forEach(function (el) {
  var a = +el.getAttribute("data-axis"), isSelect = el.tagName === "SELECT";
  el.addEventListener(isSelect ? "change" : "input", function () {
    state[a] = +el.value;
    if (!isSelect) el.setAttribute("aria-valuetext", D.axes[a].labels[state[a]]);
    redraw();
  });
});
redraw();
})();

(function () {
"use strict";
var s = document.currentScript;
var root = (s && s.closest && s.closest(".lc-picture")) || document.getElementById("__ID__");
if (!root) return;
var D = JSON.parse(root.querySelector("script.lc-data").textContent);
var state = D.axes.map(function (a) { return a.init; });
var stage = root.querySelector(".lc-stage"), caption = root.querySelector(".lc-caption");
var play = root.querySelector(".lc-play"), timer = null;
function point() {
  var i = 0;
  D.axes.forEach(function (a, k) { i = i * a.n + state[k]; });
  return i;
}
function show() {
  var i = point();
  stage.innerHTML = D.svgs[D.frame[i]];
  caption.textContent = D.captions[D.caption[i]];
  root.setAttribute("data-point", i);
  root.querySelectorAll("[data-axis]").forEach(function (el) {
    var a = +el.getAttribute("data-axis");
    el.value = state[a];
    if (el.tagName !== "SELECT") el.setAttribute("aria-valuetext", D.axes[a].labels[state[a]]);
  });
  root.querySelectorAll("[data-shows]").forEach(function (e) {
    var a = +e.getAttribute("data-shows");
    e.textContent = D.axes[a].labels[state[a]];
  });
}
function stop() {
  if (timer !== null) clearInterval(timer);
  timer = null;
  if (play) { play.textContent = "\u25B6 play"; play.setAttribute("aria-pressed", "false"); }
}
function tick() {
  state[D.step] = (state[D.step] + 1) % D.axes[D.step].n;
  show();
}
root.querySelectorAll("[data-axis]").forEach(function (el) {
  var a = +el.getAttribute("data-axis"), isSelect = el.tagName === "SELECT";
  el.addEventListener(isSelect ? "change" : "input", function () {
    if (a === D.step) stop();
    state[a] = +el.value;
    show();
  });
});
if (play) play.addEventListener("click", function () {
  if (timer !== null) { stop(); return; }
  tick();
  timer = setInterval(tick, D.interval);
  play.textContent = "\u23F8 pause";
  play.setAttribute("aria-pressed", "true");
});
show();
})();

(function () {
"use strict";
var s = document.currentScript;
var root = (s && s.closest && s.closest(".lc-quiz")) || document.getElementById("__ID__");
if (!root) return;
var tag = "-" + Math.random().toString(36).slice(2, 9);
root.querySelectorAll("input[type=radio]").forEach(function (r) { r.name += tag; });
function checkMC(q) {
  var picked = q.querySelector("input[type=radio]:checked");
  if (!picked) return [null, "Pick an option first."];
  return picked.value === q.getAttribute("data-answer") ? [true, "Correct."]
    : [false, "Not quite. Try again, or show the answer."];
}
function checkNumeric(q) {
  var x = lcParseNumber(q.querySelector(".lc-answer").value, q.getAttribute("data-unit"));
  if (x === null) return [null, "Type a number, e.g. 42.9, 4.29e10 or 42,900,000,000."];
  var want = +q.getAttribute("data-answer");
  var tol = Math.max(+q.getAttribute("data-rel-tol") * Math.abs(want),
    +q.getAttribute("data-abs-tol"));
  if (Math.abs(x - want) <= tol) return [true, "Correct."];
  var ratio = want !== 0 && x / want > 0
    ? " (" + (x / want).toPrecision(3) + "× the answer)" : "";
  return [false, "Not quite: too " + (x > want ? "high" : "low") + ratio + ". Try again."];
}
root.querySelectorAll(".lc-question").forEach(function (q) {
  var fb = q.querySelector(".lc-feedback"), ex = q.querySelector(".lc-explain");
  function say(ok, msg, reveal) {
    fb.textContent = msg;
    fb.classList.toggle("lc-correct", ok === true);
    fb.classList.toggle("lc-wrong", ok === false);
    if (reveal && ex) ex.hidden = false;
  }
  q.querySelector(".lc-check").addEventListener("click", function () {
    var r = q.getAttribute("data-kind") === "mc" ? checkMC(q) : checkNumeric(q);
    say(r[0], r[1], r[0] === true);
  });
  q.querySelector(".lc-reveal").addEventListener("click", function () {
    say(null, "Answer: " + q.getAttribute("data-answer-text"), true);
  });
  var box = q.querySelector(".lc-answer");
  if (box) box.addEventListener("keydown", function (e) {
    if (e.key === "Enter") { e.preventDefault(); q.querySelector(".lc-check").click(); }
  });
});
})();

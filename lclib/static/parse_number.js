function lcParseNumber(text, unit) {
  var t = String(text).replace(/[\s\u00a0\u202f_']/g, "").replace(/\u2212/g, "-");
  var u = String(unit || "").replace(/\s/g, "").toLowerCase();
  if (u && t.toLowerCase().slice(-u.length) === u) t = t.slice(0, -u.length);
  t = t.replace(/^([+-]?)10\^/, function (m, sign) { return sign + "1e"; })
    .replace(/[x\u00d7*]10\^?([+-]?\d+)$/i, "e$1");
  if (t.indexOf(",") >= 0) {
    if (!/^[+-]?\d{1,3}(,\d{3})+(\.\d*)?(e[+-]?\d+)?$/i.test(t)) return null;
    t = t.replace(/,/g, "");
  }
  return /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t) ? Number(t) : null;
}

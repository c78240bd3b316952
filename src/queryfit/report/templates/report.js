(function () {
  "use strict";
  var table = document.getElementById("query-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var search = document.getElementById("query-search");
  var shown = document.getElementById("query-count");
  var filter = "all";

  function cellValue(row, index, type) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent; }
    if (type === "number") { var v = parseFloat(raw); return isNaN(v) ? -Infinity : v; }
    return raw.trim().toLowerCase();
  }

  function sortBy(th) {
    var index = Array.prototype.indexOf.call(th.parentNode.cells, th);
    var type = th.getAttribute("data-type");
    var current = th.getAttribute("aria-sort");
    var dir = current === "descending" ? "ascending" :
      current === "ascending" ? "descending" : (type === "number" ? "descending" : "ascending");
    Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var keyed = rows.map(function (row, i) { return [cellValue(row, index, type), i, row]; });
    keyed.sort(function (a, b) {
      if (a[0] < b[0]) { return -sign; }
      if (a[0] > b[0]) { return sign; }
      return a[1] - b[1];
    });
    keyed.forEach(function (k) { body.appendChild(k[2]); });
  }

  function applyFilter() {
    var words = (search ? search.value : "").toLowerCase().split(/\s+/).filter(Boolean);
    var count = 0;
    rows.forEach(function (row) {
      var text = row.getAttribute("data-text");
      var ok = (filter === "all" || row.getAttribute("data-change") === filter) &&
        words.every(function (w) { return text.indexOf(w) !== -1; });
      row.hidden = !ok;
      if (ok) { count += 1; }
    });
    if (shown) { shown.textContent = count + " of " + rows.length + " queries shown"; }
  }

  rows.forEach(function (row) { row.setAttribute("data-text", row.textContent.toLowerCase()); });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    if (!th.hasAttribute("data-type")) { return; }
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); }
    });
  });
  if (search) { search.addEventListener("input", applyFilter); }
  Array.prototype.forEach.call(document.querySelectorAll("button[data-filter]"), function (b) {
    b.addEventListener("click", function () {
      filter = b.getAttribute("data-filter");
      Array.prototype.forEach.call(document.querySelectorAll("button[data-filter]"), function (o) {
        o.setAttribute("aria-pressed", o === b ? "true" : "false");
      });
      applyFilter();
    });
  });
  var controls = document.getElementById("query-controls");
  if (controls) { controls.hidden = false; }
  applyFilter();
})();

// zeroshot report: sort any table by a column, filter every table by sequence/model/strategy/center/metric,
// open a case's slices. Plain DOM, no library: the page must open from disk with no network.
(function () {
  "use strict";

  // A numeric cell's sort value: data-v holds the full number ("" for undefined, sorted last either way).
  function sortValue(row, index, numeric) {
    var cell = row.cells[index];
    if (!numeric) { return cell ? cell.textContent : ""; }
    var text = cell ? cell.getAttribute("data-v") : null;
    return text === null || text === "" ? NaN : parseFloat(text);
  }

  function sortTable(table, index, direction) {
    var header = table.tHead.rows[0].cells[index];
    var numeric = header.getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (row, position) { if (!row.hasAttribute("data-i")) { row.setAttribute("data-i", position); } });
    rows.sort(function (a, b) {
      var x = sortValue(a, index, numeric), y = sortValue(b, index, numeric), order;
      if (numeric) {
        var xNaN = isNaN(x), yNaN = isNaN(y);
        if (xNaN || yNaN) { order = xNaN === yNaN ? 0 : (xNaN ? 1 : -1); }
        else { order = direction * (x === y ? 0 : (x < y ? -1 : 1)); }
      } else {
        order = direction * x.localeCompare(y, undefined, { numeric: true });
      }
      return order || (+a.getAttribute("data-i") - +b.getAttribute("data-i"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
  }

  function onHeader(event) {
    var header = event.target.closest("th");
    if (!header) { return; }
    if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") { return; }
    event.preventDefault();
    var table = header.closest("table");
    var direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    sortTable(table, header.cellIndex, direction);
  }

  function applyFilters() {
    var chosen = {};
    document.querySelectorAll("select[data-filter]").forEach(function (select) {
      if (select.value) { chosen[select.getAttribute("data-filter")] = select.value; }
    });
    document.querySelectorAll("table[data-filterable]").forEach(function (table) {
      var shown = 0, total = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var keep = Object.keys(chosen).every(function (name) {
          var value = row.getAttribute("data-f-" + name);
          return value === null || value.split("|").indexOf(chosen[name]) >= 0;  // "|": a row of several
        });
        row.hidden = !keep;
        total += 1;
        if (keep) { shown += 1; }
      });
      var count = table.querySelector("[data-count]");
      if (count) { count.textContent = "(" + shown + " of " + total + " rows)"; }
    });
  }

  function openCase(id, scroll) {
    var target = document.getElementById(id);
    if (!target || !target.classList.contains("case")) { return; }
    document.querySelectorAll("article.case").forEach(function (article) { article.hidden = article !== target; });
    document.querySelectorAll("tr.case-row").forEach(function (row) {
      row.classList.toggle("open", row.getAttribute("data-entry") === id);
    });
    target.querySelectorAll("img[data-src]").forEach(function (img) {
      if (!img.getAttribute("src")) { img.setAttribute("src", img.getAttribute("data-src")); }
    });
    var placeholder = document.querySelector("#case-view .placeholder");
    if (placeholder) { placeholder.hidden = true; }
    if (history.replaceState) { history.replaceState(null, "", "#" + id); }
    if (scroll) { target.scrollIntoView({ block: "nearest" }); }
  }

  function onCaseRow(event) {
    var row = event.target.closest("tr.case-row");
    if (!row) { return; }
    if (event.type === "keydown" && event.key !== "Enter") { return; }
    openCase(row.getAttribute("data-entry"), true);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.data thead").forEach(function (head) {
      head.addEventListener("click", onHeader);
      head.addEventListener("keydown", onHeader);
    });
    document.querySelectorAll("table.data tbody").forEach(function (body) {
      body.addEventListener("click", onCaseRow);
      body.addEventListener("keydown", onCaseRow);
    });
    var form = document.getElementById("filters");
    form.addEventListener("change", applyFilters);
    form.addEventListener("reset", function () { setTimeout(applyFilters, 0); });
    applyFilters();
    if (location.hash.length > 1) { openCase(location.hash.slice(1), true); }
  });
})();

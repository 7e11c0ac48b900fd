// carealign review: keyboard shortcuts, unsaved-edit warning, criterion rows (add / remove / reorder).
// Progressive enhancement only: every decision works as a plain form without this script.
(function () {
  "use strict";
  var form = document.getElementById("decision-form");
  var dirty = false;
  if (form) {
    form.addEventListener("input", function () { dirty = true; });
    form.addEventListener("change", function () { dirty = true; });
    form.addEventListener("submit", function () { dirty = false; });
  }
  window.addEventListener("beforeunload", function (e) {
    if (dirty) { e.preventDefault(); e.returnValue = ""; }
  });
  function leave() { return !dirty || window.confirm("You have unsaved changes on this item. Leave it anyway?"); }
  function go(el) {
    if (!el || !leave()) return;
    dirty = false;
    if (el.tagName === "A") { window.location.href = el.href; } else { el.click(); }
  }
  document.querySelectorAll("#prev, #next").forEach(function (a) {
    a.addEventListener("click", function (e) { if (!leave()) { e.preventDefault(); } else { dirty = false; } });
  });
  var skipForm = document.getElementById("skip-form");
  if (skipForm) {
    skipForm.addEventListener("submit", function (e) { if (!leave()) { e.preventDefault(); } else { dirty = false; } });
  }

  // criteria rows of a rubric draft
  var table = document.getElementById("criteria");
  var added = 0;
  function renumber() {
    if (!table) return;
    table.querySelectorAll("tbody tr").forEach(function (tr, i) {
      var pos = tr.querySelector(".pos");
      if (pos && pos.firstChild) { pos.firstChild.nodeValue = String(i + 1); }
    });
  }
  function wire(tr) {
    var up = tr.querySelector(".up"), down = tr.querySelector(".down"), rm = tr.querySelector(".remove");
    if (up) up.addEventListener("click", function () {
      if (tr.previousElementSibling) { tr.parentNode.insertBefore(tr, tr.previousElementSibling); dirty = true; renumber(); }
    });
    if (down) down.addEventListener("click", function () {
      if (tr.nextElementSibling) { tr.parentNode.insertBefore(tr.nextElementSibling, tr); dirty = true; renumber(); }
    });
    if (rm) rm.addEventListener("click", function () { tr.remove(); dirty = true; renumber(); });
  }
  if (table) {
    table.querySelectorAll("tbody tr").forEach(wire);
    var add = document.getElementById("add-criterion");
    if (add) add.addEventListener("click", function () {
      var last = table.querySelector("tbody tr:last-child");
      if (!last) return;
      var tr = last.cloneNode(true);
      added += 1;
      var key = "n" + added;
      tr.dataset.key = key;
      tr.querySelectorAll("input, select, textarea").forEach(function (el) {
        el.name = el.name.replace(/^c-\w+-/, "c-" + key + "-");
        if (el.name.endsWith("-orig")) { el.value = ""; }
        else if (el.name.endsWith("-id")) { el.value = "new" + added; }
        else if (el.tagName !== "SELECT") { el.value = ""; }
      });
      tr.querySelectorAll(".field-error").forEach(function (el) { el.remove(); });
      table.querySelector("tbody").appendChild(tr);
      wire(tr);
      renumber();
      dirty = true;
      var text = tr.querySelector("textarea");
      if (text) text.focus();
    });
  }

  // variant verdicts: the current criterion
  var crits = Array.prototype.slice.call(document.querySelectorAll("tr.crit"));
  var current = 0;
  function mark(i) {
    if (!crits.length) return;
    current = Math.max(0, Math.min(i, crits.length - 1));
    crits.forEach(function (tr, j) { tr.classList.toggle("current", j === current); });
  }
  function choose(tr, value) {
    var r = tr.querySelector('input[type=radio][value="' + value + '"]');
    if (r && !r.disabled) { r.checked = true; dirty = true; }
  }
  mark(0);

  var pending = null;  // a decision that needs a reason first (reject, flag)
  function needReason(buttonId) {
    var reason = document.getElementById("reason"), button = document.getElementById(buttonId);
    if (!reason || !button) return;
    if (reason.value.trim()) { dirty = false; button.click(); return; }
    pending = button;
    reason.focus();
  }

  document.addEventListener("keydown", function (e) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName);
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      var target = pending || document.getElementById("save-edit") || document.getElementById("save") ||
        document.getElementById("flag");
      if (target) { e.preventDefault(); dirty = false; target.click(); }
      return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    var k = e.key;
    if (k === "n") { go(document.getElementById("skip") || document.getElementById("next")); }
    else if (k === "p") { go(document.getElementById("prev")); }
    else if (k === "?") { var s = document.getElementById("shortcuts"); if (s) s.scrollIntoView(); }
    else if (k === "a" && document.getElementById("approve")) { dirty = false; document.getElementById("approve").click(); }
    else if (k === "e" && table) { var first = table.querySelector("textarea"); if (first) { e.preventDefault(); first.focus(); } }
    else if (k === "r" && document.getElementById("reject")) { e.preventDefault(); needReason("reject"); }
    else if (k === "o" && document.getElementById("ok")) { dirty = false; document.getElementById("ok").click(); }
    else if (k === "w" && document.getElementById("flag")) { e.preventDefault(); needReason("flag"); }
    else if (crits.length && /^[1-9]$/.test(k)) { mark(parseInt(k, 10) - 1); }
    else if (crits.length && k === "a") { choose(crits[current], "agree"); mark(current + 1); }
    else if (crits.length && k === "d") {
      e.preventDefault();
      choose(crits[current], "disagree");
      var note = crits[current].querySelector("textarea");
      if (note) note.focus();
    }
    else if (crits.length && k === "y") {
      crits.forEach(function (tr) { if (!tr.querySelector("input[type=radio]:checked")) choose(tr, "agree"); });
    }
  });
})();

// Keyboard-first behaviour of the screens; no inline script anywhere (the CSP forbids it).
(function () {
  "use strict";
  function focusField(id) {
    var el = document.getElementById(id);
    if (el) { el.focus(); if (el.select) el.select(); return true; }
    return false;
  }
  document.addEventListener("keydown", function (e) {
    if (e.altKey && !e.ctrlKey && /^[0-9]$/.test(e.key)) {
      var link = document.querySelector('a[data-hotkey="' + e.key + '"]');
      if (link) { e.preventDefault(); window.location.href = link.getAttribute("href"); }
      return;
    }
    if (e.key === "F2" && focusField("scan")) { e.preventDefault(); return; }
    if (e.key === "F3" && focusField("search")) { e.preventDefault(); return; }
    if (e.key === "F4") {  // the doctor's "call the next patient"
      var call = document.getElementById("call-next");
      if (call && !call.disabled) { e.preventDefault(); call.click(); return; }
    }
    if (e.key === "Escape" && document.getElementById("work")) { resetReception(); }
  });
  function resetReception() {
    var work = document.getElementById("work");
    if (!work) return;
    work.innerHTML = "";
    var scan = document.getElementById("scan");
    if (scan) { scan.value = ""; scan.focus(); }
  }
  document.addEventListener("click", function (e) {
    var t = e.target.closest("[data-print]");
    if (t) { window.print(); return; }
    if (e.target.closest("[data-reset-reception]")) { resetReception(); }
    var icd = e.target.closest("[data-icd-code]");
    if (icd) {
      var code = document.getElementById("main_code");
      var name = document.getElementById("main_name");
      if (code) { code.value = icd.getAttribute("data-icd-code"); code.focus(); }
      if (name) { name.textContent = icd.getAttribute("data-icd-name"); }
      var list = document.getElementById("icd-results");
      if (list) { list.innerHTML = ""; }
    }
  });
  // A plain form is sent once: its submit button is disabled after the first submit (a double click
  // sends nothing more). htmx forms use hx-disabled-elt; the server also deduplicates by request key.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.hasAttribute("data-once")) return;
    if (form.dataset.sent === "1") { e.preventDefault(); return; }
    form.dataset.sent = "1";
    form.querySelectorAll("button[type=submit]").forEach(function (b) { b.setAttribute("aria-busy", "true"); });
  });
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-sent]").forEach(function (f) { delete f.dataset.sent; });
  });
  // After a fragment arrives, put the cursor where the clerk continues: the first field in error, else
  // the first control of the new content; the scan field is cleared for the next card.
  document.addEventListener("htmx:afterSwap", function (e) {
    var target = e.detail.target;
    if (!target || (target.id !== "work" && target.id !== "chart")) return;
    var scan = document.getElementById("scan");
    if (scan) scan.value = "";
    var el = target.querySelector("[aria-invalid=true]") || target.querySelector("[autofocus]") ||
             target.querySelector("select, input[type=radio]:checked, button[type=submit]");
    if (el) el.focus();
  });
  // A side panel that gets a form (a bed's actions, an imaging item): the cursor goes to the first field
  // in error, else to the field marked data-focus.
  document.addEventListener("htmx:afterSwap", function (e) {
    var target = e.detail.target;
    if (!target || !target.hasAttribute || !target.hasAttribute("data-focus-into")) return;
    var el = target.querySelector("[aria-invalid=true]") || target.querySelector("[data-focus]");
    if (el) el.focus();
  });
  // A panel that refreshes itself (the lab worklist, the critical calls) waits while the user is working
  // in it: a ticked result or a field with the cursor is not wiped by the next refresh.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail.elt;
    if (!elt.hasAttribute || !elt.hasAttribute("data-poll-paused-while-busy")) return;
    if (e.detail.requestConfig && e.detail.requestConfig.verb !== "get") return;
    if (elt.querySelector("input[type=checkbox]:checked") || elt.contains(document.activeElement)) {
      e.preventDefault();
    }
  });
  // A scan form that adds to a list is emptied for the next scan, and keeps the cursor.
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (!form.hasAttribute || !form.hasAttribute("data-clear-after")) return;
    var input = form.querySelector("input[type=text]");
    if (input) { input.value = ""; input.focus(); }
  });
  // The waiting-room display's clock.
  var clock = document.querySelector("[data-clock]");
  if (clock) {
    var tick = function () {
      var d = new Date();
      clock.textContent = ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
    };
    tick();
    setInterval(tick, 10000);
  }
})();

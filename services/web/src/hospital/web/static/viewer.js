// The image viewer: one series scrolled slice by slice (arrow keys, Page Up/Down, Home/End, the mouse
// wheel, the slider) with window/level (presets, typed centre/width, dragging on the image). Each frame is a
// JPEG the web renders through imaging (WADO-RS) with the window asked for; a frame that fails shows the
// reason instead of a stale picture. Loaded only on the viewer page; no inline script (CSP).
(function () {
  "use strict";
  var root = document.getElementById("viewer");
  if (!root) return;
  var base = root.getAttribute("data-base");
  var sops = root.getAttribute("data-instances").split(" ").filter(Boolean);
  var frameCounts = root.getAttribute("data-frames").split(" ").map(function (n) { return parseInt(n, 10) || 1; });
  // a multi-frame instance contributes each of its frames as a slice
  var slices = [];
  sops.forEach(function (sop, i) {
    for (var f = 1; f <= (frameCounts[i] || 1); f++) slices.push({ sop: sop, frame: f });
  });
  var img = document.getElementById("frame");
  var viewport = document.getElementById("viewport");
  var slider = document.getElementById("slice");
  var status = document.getElementById("viewer-status");
  var errorBox = document.getElementById("frame-error");
  var loading = document.getElementById("frame-loading");
  var wcInput = document.getElementById("wc");
  var wwInput = document.getElementById("ww");
  var windowError = document.getElementById("window-error");
  var msgSlice = root.getAttribute("data-msg-slice");
  var msgFailed = root.getAttribute("data-msg-failed");
  var msgWindow = root.getAttribute("data-msg-window");
  var msgDefault = root.getAttribute("data-msg-default");
  slider.max = String(slices.length);

  var state = {
    index: 0,
    wc: root.getAttribute("data-wc") === "" ? null : parseFloat(root.getAttribute("data-wc")),
    ww: root.getAttribute("data-ww") === "" ? null : parseFloat(root.getAttribute("data-ww")),
  };
  var cache = new Map(); // url -> {ok, url|message}
  var order = [];
  var seq = 0;

  function urlFor(i) {
    var s = slices[i];
    var u = base + s.sop + "/rendered?frame=" + s.frame;
    if (state.wc !== null && state.ww !== null) u += "&window=" + state.wc + "," + state.ww;
    return u;
  }
  function remember(url, entry) {
    cache.set(url, entry);
    order.push(url);
    while (order.length > 96) {
      var old = order.shift();
      var e = cache.get(old);
      if (e && e.ok && old !== img.dataset.url) URL.revokeObjectURL(e.url);
      cache.delete(old);
    }
  }
  function fetchFrame(url) {
    if (cache.has(url)) return Promise.resolve(cache.get(url));
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (r.ok) {
        return r.blob().then(function (b) {
          var entry = { ok: true, url: URL.createObjectURL(b) };
          remember(url, entry);
          return entry;
        });
      }
      return r.json().catch(function () { return {}; }).then(function (body) {
        // a failed frame is not cached: it is asked for again when shown again
        return { ok: false, message: body.message || ("HTTP " + r.status) };
      });
    }, function () {
      return { ok: false, message: "" };
    });
  }
  function describe() {
    var w = state.wc !== null && state.ww !== null
      ? msgWindow.replace("{c}", state.wc).replace("{w}", state.ww)
      : msgDefault;
    return msgSlice.replace("{i}", state.index + 1).replace("{n}", slices.length) + " · " + w;
  }
  function show() {
    var mine = ++seq;
    var url = urlFor(state.index);
    slider.value = String(state.index + 1);
    status.textContent = describe();
    root.dataset.index = String(state.index + 1);
    loading.hidden = false;
    fetchFrame(url).then(function (entry) {
      if (mine !== seq) return; // a newer slice was asked for meanwhile
      loading.hidden = true;
      if (entry.ok) {
        img.hidden = false;
        img.src = entry.url;
        img.dataset.url = url;
        img.alt = status.textContent;
        errorBox.textContent = "";
        root.dataset.shown = String(state.index + 1);
        root.dataset.failed = "";
        prefetch();
      } else {
        img.hidden = true;
        img.removeAttribute("src");
        img.dataset.url = "";
        errorBox.textContent = msgFailed.replace("{i}", state.index + 1) + (entry.message ? ": " + entry.message : "");
        root.dataset.shown = "";
        root.dataset.failed = String(state.index + 1);
      }
    });
  }
  function prefetch() {
    [1, 2, -1].forEach(function (d) {
      var j = state.index + d;
      if (j >= 0 && j < slices.length && !cache.has(urlFor(j))) fetchFrame(urlFor(j));
    });
  }
  function go(i) {
    i = Math.max(0, Math.min(slices.length - 1, i));
    if (i === state.index && root.dataset.index) return;
    state.index = i;
    show();
  }
  function setWindow(wc, ww) {
    state.wc = wc;
    state.ww = ww;
    wcInput.value = wc === null ? "" : String(wc);
    wwInput.value = ww === null ? "" : String(ww);
    windowError.textContent = "";
    wcInput.removeAttribute("aria-invalid");
    wwInput.removeAttribute("aria-invalid");
    show();
  }

  // keyboard: on the image, or anywhere on the page outside a text field
  function onKey(e) {
    var t = e.target;
    if (t && t !== viewport && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    var k = e.key;
    if (k === "ArrowDown" || k === "ArrowRight" || k === "PageDown") go(state.index + (k === "PageDown" ? 10 : 1));
    else if (k === "ArrowUp" || k === "ArrowLeft" || k === "PageUp") go(state.index - (k === "PageUp" ? 10 : 1));
    else if (k === "Home") go(0);
    else if (k === "End") go(slices.length - 1);
    else return;
    e.preventDefault();
  }
  document.addEventListener("keydown", onKey);
  slider.addEventListener("input", function () { go(parseInt(slider.value, 10) - 1); });
  viewport.addEventListener("wheel", function (e) {
    e.preventDefault();
    go(state.index + (e.deltaY > 0 ? 1 : -1));
  }, { passive: false });

  // window/level: presets, typed values, or dragging (right: wider, down: higher centre)
  root.querySelectorAll("[data-preset]").forEach(function (b) {
    b.addEventListener("click", function () {
      var wc = b.getAttribute("data-wc"), ww = b.getAttribute("data-ww");
      setWindow(wc === "" ? null : parseFloat(wc), ww === "" ? null : parseFloat(ww));
    });
  });
  document.getElementById("window-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var wc = parseFloat(wcInput.value.replace(",", ".")), ww = parseFloat(wwInput.value.replace(",", "."));
    if (isNaN(wc) || isNaN(ww) || ww < 1 || ww > 65536 || wc < -32768 || wc > 65535) {
      windowError.textContent = windowError.getAttribute("data-msg");
      var bad = isNaN(wc) || wc < -32768 || wc > 65535 ? wcInput : wwInput;
      bad.setAttribute("aria-invalid", "true");
      bad.focus();
      return;
    }
    setWindow(wc, ww);
  });
  var drag = null;
  var pending = false;
  // the browser's own image drag (drag-and-drop of the picture) would cancel the pointer: not here
  viewport.addEventListener("dragstart", function (e) { e.preventDefault(); });
  viewport.addEventListener("pointerdown", function (e) {
    if (e.button !== 0) return;
    e.preventDefault();
    viewport.focus();
    viewport.setPointerCapture(e.pointerId);
    drag = { x: e.clientX, y: e.clientY, wc: state.wc === null ? 40 : state.wc, ww: state.ww === null ? 400 : state.ww };
  });
  var last = null;
  viewport.addEventListener("pointermove", function (e) {
    if (!drag) return;
    last = e;
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {  // at most one new window per frame, from the latest position
      pending = false;
      if (!drag || !last) return;
      var ww = Math.max(1, Math.round(drag.ww + (last.clientX - drag.x) * 4));
      var wc = Math.round(drag.wc + (last.clientY - drag.y) * 2);
      if (ww !== state.ww || wc !== state.wc) setWindow(wc, ww);
    });
  });
  function endDrag() { drag = null; }
  viewport.addEventListener("pointerup", endDrag);
  viewport.addEventListener("pointercancel", endDrag);

  wcInput.value = state.wc === null ? "" : String(state.wc);
  wwInput.value = state.ww === null ? "" : String(state.ww);
  show();
})();

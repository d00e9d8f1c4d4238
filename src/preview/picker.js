// CodeFlux's element picker, served by the preview proxy and run on the preview origin only.
// The UI switches select mode on and off with postMessage; in select mode the element under
// the pointer is outlined with its source location (the data-cf-loc tag the sandbox's dev
// server adds: "file:line:column:Name"), and a click sends that location to the UI instead
// of reaching the app. Messages are taken only from the parent frame at one of the UI
// origins the proxy named, and sent only to that origin.
(function () {
  "use strict";
  if (window.__codefluxPicker || window.parent === window) return;
  window.__codefluxPicker = true;

  var script = document.currentScript;
  var origins = ((script && script.getAttribute("data-ui-origins")) || "").split(" ").filter(Boolean);
  var TAG = "data-cf-loc";
  var uiOrigin = null; // the origin that turned select mode on
  var nonce = null; // the UI's token for this select request, echoed in every answer
  var host = null;
  var box = null;
  var label = null;
  var cursor = null;
  var current = null;

  function send(message, origin) {
    try { window.parent.postMessage(message, origin); } catch (ignored) { /* a bad origin */ }
  }

  // Announce the picker to the UI; a frame whose parent is another origin gets nothing.
  origins.forEach(function (origin) { send({ codeflux: "ready" }, origin); });

  function parse(value) {
    var parts = value.split(":");
    if (parts.length < 4) return null;
    var name = parts.pop();
    var column = Number(parts.pop());
    var line = Number(parts.pop());
    return { file: parts.join(":"), line: line, column: column, name: name, loc: value };
  }

  function overlay() {
    if (host) return;
    host = document.createElement("codeflux-picker");
    host.style.cssText = "position:fixed;inset:0;pointer-events:none;z-index:2147483647";
    var shadow = host.attachShadow({ mode: "closed" });
    var style = document.createElement("style");
    style.textContent =
      ".box{position:fixed;display:none;border:2px solid #6d5dfc;background:rgba(109,93,252,.08);border-radius:3px;box-sizing:border-box}" +
      ".label{position:absolute;left:-2px;bottom:100%;margin-bottom:2px;white-space:nowrap;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:#6d5dfc;color:#fff;padding:1px 6px;border-radius:3px}" +
      ".box.low .label{bottom:auto;top:100%;margin:2px 0 0}";
    box = document.createElement("div");
    box.className = "box";
    label = document.createElement("div");
    label.className = "label";
    box.appendChild(label);
    shadow.append(style, box);
    document.documentElement.appendChild(host);
    cursor = document.createElement("style");
    cursor.textContent = "*{cursor:crosshair!important}";
    document.head.appendChild(cursor);
  }

  function removeOverlay() {
    if (host) host.remove();
    if (cursor) cursor.remove();
    host = box = label = cursor = current = null;
  }

  function tagged(target) {
    return target && target.closest ? target.closest("[" + TAG + "]") : null;
  }

  function outline(element) {
    current = element;
    if (!element) { box.style.display = "none"; return; }
    var place = parse(element.getAttribute(TAG));
    var rect = element.getBoundingClientRect();
    box.style.display = "block";
    box.style.left = rect.left + "px";
    box.style.top = rect.top + "px";
    box.style.width = rect.width + "px";
    box.style.height = rect.height + "px";
    box.classList.toggle("low", rect.top < 22);
    label.textContent = place ? "<" + place.name + "> " + place.file + ":" + place.line : "";
  }

  function stop(notify) {
    if (!uiOrigin) return;
    if (notify) send({ codeflux: "select-ended", nonce: nonce }, uiOrigin);
    uiOrigin = null;
    nonce = null;
    removeOverlay();
  }

  // While selecting, the app sees no pointer presses or clicks at all.
  function swallow(event) {
    if (!uiOrigin) return;
    event.preventDefault();
    event.stopImmediatePropagation();
  }
  ["pointerdown", "pointerup", "mousedown", "mouseup", "dblclick", "contextmenu", "submit"].forEach(function (type) {
    window.addEventListener(type, swallow, true);
  });

  window.addEventListener("click", function (event) {
    if (!uiOrigin) return;
    swallow(event);
    var element = tagged(event.target);
    var place = element && parse(element.getAttribute(TAG));
    if (!place) return;
    send({
      codeflux: "picked",
      nonce: nonce,
      loc: place.loc,
      file: place.file,
      line: place.line,
      column: place.column,
      name: place.name,
      text: (element.innerText || "").trim().slice(0, 80)
    }, uiOrigin);
    stop(false);
  }, true);

  window.addEventListener("pointermove", function (event) {
    if (uiOrigin) outline(tagged(event.target));
  }, true);
  window.addEventListener("scroll", function () {
    if (uiOrigin && current) outline(current);
  }, true);
  window.addEventListener("keydown", function (event) {
    if (uiOrigin && event.key === "Escape") { swallow(event); stop(true); }
  }, true);

  window.addEventListener("message", function (event) {
    if (event.source !== window.parent || origins.indexOf(event.origin) < 0) return;
    var data = event.data;
    if (!data || data.codeflux !== "select") return;
    if (data.on && typeof data.nonce === "string") {
      // A page with no tagged element comes from a dev server CodeFlux does not tag (an
      // imported app's own): there is nothing to pick, and the UI says so.
      if (!document.querySelector("[" + TAG + "]")) {
        send({ codeflux: "untagged", nonce: data.nonce }, event.origin);
        return;
      }
      uiOrigin = event.origin;
      nonce = data.nonce;
      overlay();
      send({ codeflux: "selecting", nonce: nonce }, uiOrigin);
    } else {
      stop(false);
    }
  });
})();

// Small behaviours htmx does not cover: keyboard submit, example chips, copy buttons,
// the preview's refresh button, the running timer, attaching images and selecting elements
// in the preview. No framework, no network.
(function () {
  "use strict";

  // Ctrl/⌘+Enter submits the prompt box it was typed in.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var field = event.target;
    if (field && field.form && field.tagName === "TEXTAREA") {
      event.preventDefault();
      field.form.requestSubmit();
    }
  });

  document.addEventListener("click", function (event) {
    var chip = event.target.closest("[data-example]");
    if (chip) {
      var box = document.getElementById("prompt");
      if (box) { box.value = chip.getAttribute("data-example"); box.focus(); }
      return;
    }
    var copy = event.target.closest("[data-copy], [data-copy-from]");
    if (copy) {
      var text = copy.getAttribute("data-copy");
      if (text === null) {
        var source = document.getElementById(copy.getAttribute("data-copy-from"));
        text = source ? source.textContent : "";
      }
      navigator.clipboard.writeText(text).then(function () {
        var label = copy.textContent;
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = label; }, 1200);
      });
      return;
    }
    var refresh = event.target.closest("[data-refresh-frame]");
    if (refresh) {
      var frame = document.getElementById(refresh.getAttribute("data-refresh-frame"));
      if (frame) frame.src = frame.src;
    }
  });

  // Keeps every "elapsed" label ticking from its data-started timestamp.
  function tick() {
    document.querySelectorAll("[data-started]").forEach(function (label) {
      var started = Date.parse(label.getAttribute("data-started"));
      if (isNaN(started)) return;
      var seconds = Math.max(0, Math.round((Date.now() - started) / 1000));
      label.textContent = Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:load", tick);

  // The clone command names this server as the browser reaches it.
  function cloneCommands() {
    document.querySelectorAll("[data-clone-path]").forEach(function (command) {
      command.textContent = "git clone " + location.origin + command.getAttribute("data-clone-path");
    });
  }
  document.addEventListener("htmx:load", cloneCommands);
  document.addEventListener("DOMContentLoaded", cloneCommands);

  // Images for a prompt: the picker's list with thumbnails and remove buttons, plus files
  // dropped on the form or pasted into it. The file input holds the files the form sends.
  var IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"];
  function pickerOf(form) {
    return form && form.querySelector('input[type="file"][name="images"]');
  }
  function showAttached(input) {
    var list = input.closest(".attach").querySelector(".attached");
    list.textContent = "";
    Array.prototype.forEach.call(input.files, function (file, index) {
      var item = document.createElement("li");
      var thumb = document.createElement("img");
      thumb.src = URL.createObjectURL(file);
      thumb.alt = "";
      var name = document.createElement("span");
      name.textContent = file.name || "pasted image";
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove-image";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove " + name.textContent);
      remove.addEventListener("click", function () {
        var kept = new DataTransfer();
        Array.prototype.forEach.call(input.files, function (other, otherIndex) {
          if (otherIndex !== index) kept.items.add(other);
        });
        input.files = kept.files;
        showAttached(input);
      });
      item.append(thumb, name, remove);
      list.appendChild(item);
    });
  }
  function attach(form, files) {
    var input = pickerOf(form);
    if (!input) return false;
    var images = Array.prototype.filter.call(files, function (file) {
      return IMAGE_TYPES.indexOf(file.type) >= 0;
    });
    if (!images.length) return false;
    var all = new DataTransfer();
    Array.prototype.forEach.call(input.files, function (file) { all.items.add(file); });
    images.forEach(function (file) { all.items.add(file); });
    input.files = all.files;
    showAttached(input);
    return true;
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches('input[type="file"][name="images"]')) {
      showAttached(event.target);
    }
  });
  document.addEventListener("paste", function (event) {
    var form = event.target.closest && event.target.closest("form");
    if (form && event.clipboardData && attach(form, event.clipboardData.files)) {
      event.preventDefault();
    }
  });
  document.addEventListener("dragover", function (event) {
    var form = event.target.closest && event.target.closest("form");
    if (pickerOf(form)) event.preventDefault();
  });
  document.addEventListener("drop", function (event) {
    var form = event.target.closest && event.target.closest("form");
    if (form && event.dataTransfer && attach(form, event.dataTransfer.files)) {
      event.preventDefault();
    }
  });

  // Selecting elements in the preview. The picker runs inside the preview frame (its own
  // origin, see src/preview/picker.js); this page only exchanges messages with it, checking
  // that they come from that frame and the preview's origin, and sending to that origin only.
  var MAX_SELECTED = 10;
  var selectTimer = null;
  // A fresh token for each select request: the preview's answers must carry it, and are
  // taken only while select mode is on, so the app's own code cannot add chips unasked.
  var selectNonce = null;
  function newNonce() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function previewFrame() { return document.getElementById("preview-frame"); }
  function originOf(frame) {
    try { return new URL(frame.getAttribute("src"), location.href).origin; } catch (ignored) { return null; }
  }
  function selectToggle() { return document.getElementById("select-toggle"); }
  function selectHint(text) {
    var hint = document.getElementById("select-hint");
    if (hint) hint.textContent = text;
  }
  function setSelecting(on) {
    var toggle = selectToggle();
    var frame = previewFrame();
    if (!toggle || !frame || !frame.contentWindow) return;
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    selectNonce = on ? newNonce() : null;
    frame.contentWindow.postMessage({ codeflux: "select", on: on, nonce: selectNonce }, originOf(frame));
    clearTimeout(selectTimer);
    selectHint("");
    if (on) {
      // The picker answers at once; silence means it is not there or does not know this
      // page's origin.
      selectTimer = setTimeout(function () {
        toggle.setAttribute("aria-pressed", "false");
        selectHint("The preview did not answer. Wait until it has loaded; if you opened CodeFlux at another address than its listen address, set CODEFLUX_PUBLIC_URL to " + location.origin + ".");
      }, 4000);
    }
  }
  function addChip(place) {
    var list = document.getElementById("selected-elements");
    if (!list || typeof place.loc !== "string") return;
    var items = list.querySelectorAll(".picked-item");
    var taken = Array.prototype.some.call(items, function (item) { return item.getAttribute("data-loc") === place.loc; });
    if (taken) return;
    if (items.length >= MAX_SELECTED) {
      selectHint("At most " + MAX_SELECTED + " elements per request.");
      return;
    }
    var text = "<" + place.name + "> in " + place.file + ":" + place.line;
    var shown = typeof place.text === "string" ? place.text : "";
    var item = document.createElement("li");
    item.className = "picked-item";
    item.setAttribute("data-loc", place.loc);
    if (shown) item.title = shown;
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = "selected";
    // With its text, so the model can tell apart the items of one list.
    input.value = shown ? JSON.stringify({ loc: place.loc, text: shown }) : place.loc;
    var label = document.createElement("code");
    label.textContent = text;
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove-chip";
    remove.textContent = "×";
    remove.setAttribute("aria-label", "Remove " + text);
    item.append(input, label, remove);
    list.appendChild(item);
    var box = document.getElementById("follow-up-prompt");
    if (box) box.focus();
  }
  // The quick-edit panel for the picked element (static text and classes, no model).
  function loadQuickEdit(loc) {
    var slot = document.getElementById("quick-edit");
    if (!slot || !window.htmx) return;
    var url = slot.getAttribute("data-edit-url") + "?loc=" + encodeURIComponent(loc);
    window.htmx.ajax("GET", url, { target: "#quick-edit", swap: "outerHTML" });
  }
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("#select-toggle");
    if (toggle) {
      setSelecting(toggle.getAttribute("aria-pressed") !== "true");
      return;
    }
    var remove = event.target.closest(".remove-chip");
    if (remove) remove.closest(".picked-item").remove();
    var close = event.target.closest(".close-quick-edit");
    if (close) close.closest("#quick-edit").textContent = "";
  });
  window.addEventListener("message", function (event) {
    var frame = previewFrame();
    if (!frame || event.source !== frame.contentWindow || event.origin !== originOf(frame)) return;
    var data = event.data || {};
    var toggle = selectToggle();
    var selecting = toggle && toggle.getAttribute("aria-pressed") === "true";
    // "ready" starts no action of its own; every other answer must be to this request.
    if (data.codeflux !== "ready" && (!selecting || !selectNonce || data.nonce !== selectNonce)) return;
    if (data.codeflux === "selecting") {
      clearTimeout(selectTimer);
    } else if (data.codeflux === "untagged") {
      clearTimeout(selectTimer);
      if (toggle) toggle.setAttribute("aria-pressed", "false");
      selectNonce = null;
      selectHint("Selecting elements is not available for this project's page as it is served now: it carries no source locations (an imported app's own dev server is not tagged by CodeFlux, and an error page has none). Describe the place in words instead.");
    } else if (data.codeflux === "ready") {
      // The preview reloaded (a new version): carry select mode over.
      if (selecting) setSelecting(true);
    } else if (data.codeflux === "select-ended") {
      if (toggle) toggle.setAttribute("aria-pressed", "false");
      selectNonce = null;
      selectHint("");
    } else if (data.codeflux === "picked") {
      if (toggle) toggle.setAttribute("aria-pressed", "false");
      selectNonce = null;
      selectHint("");
      addChip(data);
      loadQuickEdit(data.loc);
    }
  });

  // New progress lines scroll into view.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var list = document.getElementById("progress-list");
    if (list && list.contains(event.detail.target)) list.scrollTop = list.scrollHeight;
  });
})();

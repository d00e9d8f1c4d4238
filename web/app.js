// Small behaviours htmx does not cover: keyboard submit, example chips, copy buttons,
// the preview's refresh button, the running timer and attaching images. No framework, no
// network.
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

  // New progress lines scroll into view.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var list = document.getElementById("progress-list");
    if (list && list.contains(event.detail.target)) list.scrollTop = list.scrollHeight;
  });
})();

// Small behaviours htmx does not cover: keyboard submit, example chips, copy buttons,
// the preview's refresh button and the running timer. No framework, no network.
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

  // New progress lines scroll into view.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var list = document.getElementById("progress-list");
    if (list && list.contains(event.detail.target)) list.scrollTop = list.scrollHeight;
  });
})();

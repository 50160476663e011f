/* Keyboard navigation of item lists, "/" to search and "?" for the shortcuts help, on every page.
 *
 * Lists are tables with the class "keyboard-list" whose rows carry data-ref; a row opens at its
 * first link (the item page).
 * j / k move the selection (the row gets focus, aria-selected and a visible outline), o or Enter
 * opens the selected item. The selection is remembered by reference, so when htmx swaps in a
 * fresh copy of the queues (the page polls for changes) the same item stays selected.
 * Keys typed in inputs, selects, textareas and editable content are left alone.
 */
(function () {
  "use strict";

  var selectedRef = null;

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("table.keyboard-list tbody tr[data-ref]"));
  }

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function mark(row, focus) {
    rows().forEach(function (r) {
      r.classList.remove("selected");
      r.removeAttribute("aria-selected");
    });
    if (!row) return;
    if (!row.hasAttribute("tabindex")) row.tabIndex = -1; // focusable by script, not a Tab stop
    row.classList.add("selected");
    row.setAttribute("aria-selected", "true");
    selectedRef = row.getAttribute("data-ref");
    if (focus) {
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function current() {
    var all = rows();
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute("data-ref") === selectedRef) return i;
    }
    return -1;
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var index = current();
    index = index < 0 ? (step > 0 ? 0 : all.length - 1) : Math.max(0, Math.min(all.length - 1, index + step));
    mark(all[index], true);
  }

  function open() {
    var all = rows();
    var index = current();
    var link = index >= 0 && all[index].querySelector("a[href]");
    if (link) window.location.assign(link.href);
  }

  function help() {
    var dialog = document.getElementById("shortcuts-help");
    if (dialog && !dialog.open) dialog.showModal();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var dialog = document.getElementById("shortcuts-help");
    if (dialog && dialog.open) return; // the dialog handles Esc itself
    if (isTyping(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "o": open(); break;
      case "Enter":
        // Enter on a selected row opens it; on a link or button it does what it always does.
        if (event.target && event.target.matches && event.target.matches("tr[data-ref]")) open(); else return;
        break;
      case "/": {
        var box = document.getElementById("global-search");
        if (!box) return;
        box.focus();
        box.select();
        break;
      }
      case "?": help(); break;
      default: return;
    }
    event.preventDefault();
  });

  // A click on a row selects it too, so j / k continue from there.
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("table.keyboard-list tbody tr[data-ref]");
    if (row) mark(row, false);
  });

  // The queues poll only while the page is visible (queue.js, not an hx-trigger filter: htmx would
  // have to evaluate that as code, which the Content-Security-Policy forbids).
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.target.id === "queues" && document.visibilityState !== "visible") event.preventDefault();
  });

  // After a refresh of the queues, select (and, if it had focus, focus) the same item again.
  var rowHadFocus = false;
  document.addEventListener("htmx:beforeSwap", function () {
    var active = document.activeElement;
    rowHadFocus = !!(active && active.matches && active.matches("tr[data-ref]"));
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!selectedRef) return;
    var row = rows().filter(function (r) { return r.getAttribute("data-ref") === selectedRef; })[0];
    if (row) mark(row, rowHadFocus);
  });
})();

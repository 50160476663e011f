// The item page: keyboard shortcuts, canned responses, and htmx niceties.
//
// Shortcuts (ignored while typing in a field, or with Ctrl/Alt/Meta held):
//   r  focus the reply box          n  focus the note box
//   e  resolve: focuses the "Resolved" button and asks to press Enter (never resolves by itself)
//   u or Escape  back to the queue (Escape first cancels a pending resolve)
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }

  function announce(text, kind) {
    var live = byId("item-live");
    if (!live) { return; }
    var box = document.createElement("div");
    box.className = "flash flash-" + (kind || "info");
    box.textContent = text;
    live.replaceChildren(box);
  }

  function isTyping(target) {
    if (!target || !target.closest) { return false; }
    return Boolean(target.isContentEditable || target.closest("input, textarea, select, [contenteditable]"));
  }

  function focusField(id) {
    var field = byId(id);
    if (!field) { return false; }
    field.scrollIntoView({block: "center"});
    field.focus();
    return true;
  }

  // --- resolving asks first -----------------------------------------------------------------

  function cancelResolve() {
    var prompt = byId("resolve-confirm");
    if (prompt) { prompt.remove(); }
    document.querySelectorAll(".confirm-armed").forEach(function (b) { b.classList.remove("confirm-armed"); });
  }

  function armResolve() {
    var button = document.querySelector("#status-form button[value='resolved']");
    if (!button) {
      announce("This item cannot be resolved from its current status.", "info");
      return;
    }
    cancelResolve();
    button.classList.add("confirm-armed");
    var prompt = document.createElement("p");
    prompt.id = "resolve-confirm";
    prompt.className = "resolve-confirm";
    prompt.setAttribute("role", "alert");
    prompt.textContent = "Press Enter to resolve this item, or Escape to cancel.";
    button.closest("fieldset").after(prompt);
    button.setAttribute("aria-describedby", "resolve-confirm");
    button.scrollIntoView({block: "center"});
    button.focus();
    button.addEventListener("blur", function onBlur() {
      button.removeEventListener("blur", onBlur);
      button.removeAttribute("aria-describedby");
      // Let a click on the button itself go through before the prompt goes away.
      setTimeout(cancelResolve, 150);
    });
  }

  function backToQueue() {
    var link = document.querySelector(".crumbs a");
    window.location.assign(link ? link.href : "/");
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.altKey || event.metaKey) { return; }
    if (event.key === "Escape" && byId("resolve-confirm")) {
      event.preventDefault();
      var armed = document.querySelector(".confirm-armed");
      cancelResolve();
      if (armed) { armed.blur(); }
      return;
    }
    if (isTyping(event.target) || document.querySelector("dialog[open]")) { return; }
    var handled = true;
    switch (event.key) {
      case "r": handled = focusField("reply"); break;
      case "n": handled = focusField("note"); break;
      case "e": armResolve(); break;
      case "u":
      case "Escape": backToQueue(); break;
      default: handled = false;
    }
    if (handled) { event.preventDefault(); }
  });

  // --- canned responses ---------------------------------------------------------------------

  function insertAtCursor(textarea, text) {
    var start = textarea.selectionStart, end = textarea.selectionEnd, value = textarea.value;
    if (typeof start !== "number") { start = end = value.length; }
    textarea.value = value.slice(0, start) + text + value.slice(end);
    textarea.focus();
    textarea.setSelectionRange(start + text.length, start + text.length);
  }

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.id !== "canned-select" || !select.value) { return; }
    var url = select.dataset.url.replace(/\/0$/, "/" + encodeURIComponent(select.value));
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (data) {
        var textarea = byId("reply");
        if (textarea) { insertAtCursor(textarea, data.text); typed("reply"); }
        announce("Inserted “" + data.title + "”. Edit it before sending.", "info");
      })
      .catch(function () { announce("That canned response could not be loaded; try again.", "error"); })
      .finally(function () { select.value = ""; });
  });

  // With JavaScript the select inserts by itself; the button is for pages without it.
  document.documentElement.classList.add("js");

  // --- drafts: what is typed in the reply and note boxes is never lost -----------------------
  //
  // Saved on the server as the person types (a second after they pause, and when the page is left),
  // so the page draws it in the box on every load, on any computer. This browser also keeps each
  // keystroke in localStorage ("backdesk:draft:<user id>:<ref>:<box>", with whether the server has
  // it yet), which covers a save that did not get through. Sending the reply or note removes both.

  var DRAFT_BOXES = ["reply", "note"];
  var SAVE_DELAY = 1000;
  var timers = {};

  function composers() { return byId("composers"); }

  function draftKey(box) {
    var holder = composers();
    if (!holder || !holder.dataset.draftKey) { return null; }
    return "backdesk:draft:" + holder.dataset.draftKey + ":" + box;
  }

  function storage() {
    try { return window.localStorage; } catch (e) { return null; }
  }

  function readLocal(box) {
    var key = draftKey(box), store = storage(), raw = null;
    if (!key || !store) { return null; }
    try { raw = store.getItem(key); } catch (e) { return null; }
    if (raw === null) { return null; }
    try {
      var kept = JSON.parse(raw);
      if (kept && typeof kept.text === "string") { return kept; }
    } catch (e) { /* plain text from before: not on the server yet */ }
    return {text: raw, synced: false};
  }

  function writeLocal(box, text, synced) {
    var key = draftKey(box), store = storage();
    if (!key || !store) { return; }
    try {
      if (text.trim()) { store.setItem(key, JSON.stringify({text: text, synced: synced})); }
      else { store.removeItem(key); }
    } catch (e) { /* storage full or disabled: the server still gets it */ }
  }

  function draftRequest(box, text) {
    var holder = composers(), token = document.querySelector("#composers input[name=csrf_token]");
    if (!holder || !holder.dataset.draftUrl || !token) { return null; }
    var body = new FormData();
    body.append("csrf_token", token.value);
    body.append("body", text);
    return {url: holder.dataset.draftUrl.replace(/BOX$/, box), body: body};
  }

  function sendDraft(box) {
    clearTimeout(timers[box]);
    delete timers[box];
    var field = byId(box);
    if (!field) { return; }
    var text = field.value, request = draftRequest(box, text);
    if (!request) { return; }
    fetch(request.url, {method: "POST", body: request.body, credentials: "same-origin"})
      .then(function (response) {
        var kept = readLocal(box);
        if (response.ok && kept && kept.text === text) { writeLocal(box, text, true); }
      })
      .catch(function () { /* offline: kept in this browser, sent on the next load */ });
  }

  function typed(box) {
    var field = byId(box);
    if (!field) { return; }
    writeLocal(box, field.value, false);
    clearTimeout(timers[box]);
    timers[box] = setTimeout(function () { sendDraft(box); }, SAVE_DELAY);
  }

  function flushDrafts() {
    // The page is being left (a status button, a link): send what is waiting, without waiting.
    Object.keys(timers).forEach(function (box) {
      clearTimeout(timers[box]);
      delete timers[box];
      var field = byId(box), request = field && draftRequest(box, field.value);
      if (request && navigator.sendBeacon) { navigator.sendBeacon(request.url, request.body); }
    });
  }

  function clearDraft(box) {
    clearTimeout(timers[box]);
    delete timers[box];
    writeLocal(box, "", true);  // the server removed its copy when the reply or note was sent
  }

  function restoreDrafts() {
    DRAFT_BOXES.forEach(function (box) {
      var field = byId(box);
      if (!field || !draftKey(box)) { return; }
      var kept = readLocal(box);
      if (kept && !kept.synced) {
        if (kept.text !== field.value) {
          field.value = kept.text;  // typed here after the last save that got through: the newest
          field.classList.add("draft-restored");
        }
        sendDraft(box);
      } else if (field.value.trim()) {
        writeLocal(box, field.value, true);  // the page drew the saved draft (or a conflict gave it back)
      } else if (kept) {
        writeLocal(box, "", true);  // sent or emptied elsewhere
      }
    });
  }

  document.addEventListener("input", function (event) {
    var id = event.target && event.target.id;
    if (DRAFT_BOXES.indexOf(id) !== -1) { typed(id); }
  });
  window.addEventListener("pagehide", flushDrafts);
  document.addEventListener("submit", function (event) {
    if (event.target && event.target.id === "status-form") { flushDrafts(); }
  }, true);

  // --- htmx: conflicts and refusals are pages worth showing ---------------------------------

  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 409 || status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (event.detail.successful && event.detail.xhr.status === 200 && form.matches && form.matches("form.composer")) {
      form.reset();
      DRAFT_BOXES.forEach(function (box) {
        var field = byId(box);
        // Emptied, not reset: after a conflict the box's default text is the draft just sent.
        if (field && form.contains(field)) { field.value = ""; field.classList.remove("draft-restored"); clearDraft(box); }
      });
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    restoreDrafts();  // a conflict swaps in a new page body with empty boxes
    var panel = byId("changes");
    if (panel && !panel.dataset.shown) {
      panel.dataset.shown = "1";
      panel.focus();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    restoreDrafts();
    var panel = byId("changes");
    if (panel) { panel.dataset.shown = "1"; panel.focus(); }
  });
})();

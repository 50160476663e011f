/* The item page's upload box: drop files on it or pick them, then send them with a progress bar.
   Without this script the box is a plain multipart form and works the same, with no progress. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) { return; }
  var input = document.getElementById("upload-files");
  var drop = document.getElementById("upload-drop");
  var hint = document.getElementById("upload-drop-hint");
  var chosen = document.getElementById("upload-chosen");
  var progress = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = document.getElementById("upload-submit");
  var maxRequest = parseInt(form.getAttribute("data-max-request"), 10) || 0;
  var maxFiles = parseInt(form.getAttribute("data-max-files"), 10) || 0;
  var busy = false;

  form.classList.add("js-upload");
  hint.hidden = false;

  function sizeText(bytes) {
    if (bytes >= 1048576) { return (bytes / 1048576).toFixed(1).replace(/\.0$/, "") + " MB"; }
    if (bytes >= 1024) { return (bytes / 1024).toFixed(1).replace(/\.0$/, "") + " KB"; }
    return bytes + " bytes";
  }

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }

  function totalSize() {
    var total = 0;
    for (var i = 0; i < input.files.length; i += 1) { total += input.files[i].size; }
    return total;
  }

  function listChosen() {
    chosen.textContent = "";
    for (var i = 0; i < input.files.length; i += 1) {
      var li = document.createElement("li");
      li.textContent = input.files[i].name + " (" + sizeText(input.files[i].size) + ")";
      chosen.appendChild(li);
    }
    chosen.hidden = input.files.length === 0;
    say("", false);
  }

  input.addEventListener("change", listChosen);

  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (event) {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  });
  ["dragleave", "dragend"].forEach(function (name) {
    drop.addEventListener(name, function () { drop.classList.remove("dragging"); });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    drop.classList.remove("dragging");
    if (busy || !event.dataTransfer || !event.dataTransfer.files.length) { return; }
    input.files = event.dataTransfer.files;
    listChosen();
  });

  function finish(xhr) {
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    if (body && body.redirect) {
      // The page shows what was added and what was refused, and the files in the thread.
      window.location.assign(body.redirect);
      return;
    }
    var message = body && body.error && body.error.message;
    if (!message) {
      message = xhr.status === 413 ? "The files are too large to send together." :
        "The upload failed (" + (xhr.status || "no connection") + "). Try again.";
    }
    done(message, true);
  }

  function done(message, isError) {
    busy = false;
    button.disabled = false;
    progress.hidden = true;
    say(message, isError);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) { return; }
    if (!input.files.length) { say("Choose at least one file to upload.", true); return; }
    if (maxFiles && input.files.length > maxFiles) {
      say("At most " + maxFiles + " files at once.", true);
      return;
    }
    if (maxRequest && totalSize() > maxRequest) {
      say("These files are " + sizeText(totalSize()) + " together, over the limit of " +
          sizeText(maxRequest) + " for one upload. Send them in smaller groups.", true);
      return;
    }
    busy = true;
    button.disabled = true;
    progress.value = 0;
    progress.textContent = "0%";
    progress.hidden = false;
    say("Uploading " + input.files.length + (input.files.length === 1 ? " file…" : " files…"), false);

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", form.querySelector("input[name=csrf_token]").value);
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        var percent = Math.round(e.loaded * 100 / e.total);
        progress.value = percent;
        progress.textContent = percent + "%";
      }
    });
    xhr.addEventListener("load", function () { finish(xhr); });
    xhr.addEventListener("error", function () { done("The upload failed: no connection. Try again.", true); });
    xhr.addEventListener("abort", function () { done("The upload was stopped.", true); });
    xhr.send(new FormData(form));
  });
})();

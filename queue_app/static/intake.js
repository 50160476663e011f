/* Show only the detail fields of the chosen request type. Without this script every
   type's fields stay visible and the server reads only those of the chosen type. */
(function () {
  "use strict";
  var form = document.getElementById("intake-form");
  if (!form) { return; }
  var select = form.querySelector("select[name=type]");
  var groups = form.querySelectorAll("fieldset.type-fields");
  form.classList.add("js-types");

  function update() {
    groups.forEach(function (group) {
      var active = group.getAttribute("data-type") === select.value;
      group.hidden = !active;
      group.disabled = !active;
    });
  }
  select.addEventListener("change", update);
  update();
})();

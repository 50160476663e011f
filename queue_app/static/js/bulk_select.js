// "Select all on this page" and the live count for the bulk assignment forms.
(function () {
  var form = document.getElementById("bulk-assign");
  if (!form) { return; }
  var all = document.getElementById("select-all");
  var count = document.getElementById("bulk-count");
  function boxes() { return Array.prototype.slice.call(document.querySelectorAll('input.select-item[form="bulk-assign"]')); }
  function update() {
    var list = boxes();
    var n = list.filter(function (b) { return b.checked; }).length;
    if (count) { count.textContent = n === 0 ? "No items selected" : (n === 1 ? "1 item selected" : n + " items selected"); }
    if (all) { all.checked = n > 0 && n === list.length; all.indeterminate = n > 0 && n < list.length; }
  }
  if (all) {
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
      update();
    });
  }
  boxes().forEach(function (b) { b.addEventListener("change", update); });
  update();
})();

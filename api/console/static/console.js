// The console's only script of its own (pages work without it). A USB barcode scanner
// "types" a scan and presses Enter; GS1 scanners send FNC1 as the group separator (GS,
// 0x1d), which some keyboard layouts turn into nothing. Fields marked data-scan keep GS:
// a Ctrl+] (how many scanners send it) is written into the field as the real character.
document.addEventListener("keydown", function (event) {
  var field = event.target;
  if (!(field instanceof HTMLInputElement) || !field.hasAttribute("data-scan")) return;
  if (event.ctrlKey && (event.key === "]" || event.code === "BracketRight")) {
    event.preventDefault();
    var start = field.selectionStart || 0, end = field.selectionEnd || 0;
    field.value = field.value.slice(0, start) + "\u001d" + field.value.slice(end);
    field.selectionStart = field.selectionEnd = start + 1;
  }
});
// A form whose button says data-confirm asks once before it is sent.
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  var question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
// receive: a scanner ends each scan with Enter. In a receipt form that would send the form
// half filled in; there Enter in a scan field moves on to the next field instead.
document.addEventListener("keydown", function (event) {
  var field = event.target;
  if (event.key !== "Enter" || !(field instanceof HTMLInputElement) ||
      !field.hasAttribute("data-scan") || !field.form ||
      !field.form.classList.contains("receive-form")) return;
  event.preventDefault();
  var inputs = Array.prototype.slice.call(field.form.querySelectorAll("input:not([type=hidden])"));
  var next = inputs[inputs.indexOf(field) + 1];
  if (next) next.focus();
});

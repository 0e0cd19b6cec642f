// convadmin's only script: small progressive enhancements on top of htmx (no eval, CSP-safe).
"use strict";

// Copy buttons: <button data-copy-target="id">.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copyTarget);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// After htmx adds content, move focus to the element marked data-autofocus (e.g. a new participant row).
document.addEventListener("htmx:afterSettle", (event) => {
  const target = event.detail.elt && event.detail.elt.querySelector
    ? event.detail.elt.querySelector("[data-autofocus]") || (event.detail.elt.matches("[data-autofocus]") ? event.detail.elt : null)
    : null;
  if (target) { target.focus(); target.removeAttribute("data-autofocus"); }
});

// Inline validation: when htmx swaps in a field's error container, keep its input's aria-invalid in step.
document.addEventListener("htmx:afterSettle", (event) => {
  const box = event.detail.elt;
  if (!box || !box.matches || !box.matches("[data-error-for]")) return;
  const input = document.getElementById(box.dataset.errorFor);
  if (!input) return;
  if (box.querySelector("li")) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
});

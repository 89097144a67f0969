// The greeting page's Listen button plays the saved greeting from the start; a failed load says so.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-listen]");
  if (!button) {
    return;
  }
  const audio = document.getElementById(button.dataset.listen);
  audio.currentTime = 0;
  audio.play().catch(() => {});
});

document.addEventListener(
  "error",
  (event) => {
    const audio = event.target;
    if (!(audio instanceof HTMLAudioElement) || !audio.closest(".listen")) {
      return;
    }
    const note = document.createElement("p");
    note.className = "errornote listen-error";
    note.textContent = "The audio could not be loaded. Reload the page to see why.";
    audio.replaceWith(note);
  },
  true,
);

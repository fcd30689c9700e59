/* The colour theme: light, dark, or the system's, remembered in localStorage.
 *
 * Every page loads this as a plain (not deferred, not module) script at the end of
 * <head> (templates/base.html): it sets <html data-theme="light|dark"> before the body
 * is painted, without an inline script, which the CSP forbids. app.css keys its dark
 * colours on that attribute; the stylesheets marked data-theme-for (highlight.js's)
 * are switched on with it. Any radio named "theme" on the page changes the choice. */
(() => {
  "use strict";
  const KEY = "theme";
  const CHOICES = ["light", "dark", "system"];
  const root = document.documentElement;
  const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

  function stored() {
    let choice = null;
    try {
      choice = window.localStorage.getItem(KEY);
    } catch (_) {
      // Storage refused (privacy settings): follow the system.
    }
    return CHOICES.includes(choice) ? choice : "system";
  }

  function apply(choice) {
    const theme = choice === "system" ? (systemDark.matches ? "dark" : "light") : choice;
    root.dataset.theme = theme;
    root.dataset.themeChoice = choice;
    for (const link of document.querySelectorAll("link[data-theme-for]")) {
      link.media = link.dataset.themeFor === theme ? "all" : "not all";
    }
  }

  function radios() {
    return document.querySelectorAll('input[type="radio"][name="theme"]');
  }

  function checkStored() {
    const choice = stored();
    for (const radio of radios()) radio.checked = radio.value === choice;
  }

  apply(stored());

  systemDark.addEventListener("change", () => apply(stored()));
  // Another tab switched: follow it.
  window.addEventListener("storage", (event) => {
    if (event.key === KEY || event.key === null) { apply(stored()); checkStored(); }
  });
  document.addEventListener("DOMContentLoaded", () => {
    checkStored();
    for (const radio of radios()) {
      radio.addEventListener("change", () => {
        if (!radio.checked || !CHOICES.includes(radio.value)) return;
        try {
          if (radio.value === "system") window.localStorage.removeItem(KEY);
          else window.localStorage.setItem(KEY, radio.value);
        } catch (_) {
          // Not remembered, but still applied to this page.
        }
        apply(radio.value);
      });
    }
  });
})();

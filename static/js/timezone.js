/* Sign-up (templates/accounts/signup.html): the time zone starts as the browser's, when the list has it. */
for (const select of document.querySelectorAll("select[data-browser-default]")) {
  let zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { zone = ""; }
  if (zone && [...select.options].some((option) => option.value === zone)) select.value = zone;
}

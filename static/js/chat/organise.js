/* Organising and sharing the chat on screen: the "Chat options" menu (share, pin, archive,
 * export as Markdown or JSON), the share dialog, and importing a chat exported as JSON. */
import { onChromeUpdate, showComposerError } from "./chrome.js";
import { copyText, flashCopied } from "./dom.js";
import { postForm } from "./http.js";
import { announce, el, urls } from "./page.js";
import { upsertConversation } from "./sidebar.js";
import { conversationById, state } from "./state.js";
import { urlWith } from "./urls.js";

const $ = (id) => document.getElementById(id);
const menu = {
  wrap: $("conv-menu"), button: $("conv-menu-button"), list: $("conv-menu-list"),
  share: $("conv-share"), pin: $("conv-pin"), archive: $("conv-archive"),
  exportMd: $("conv-export-md"), exportJson: $("conv-export-json"),
};
const share = { dialog: $("share-dialog"), text: $("share-text"), url: $("share-url"), copy: $("share-copy"), revoke: $("share-revoke") };
const importFile = $("import-file");
const SHARE_TEXT = share.text.textContent;

// Opening a conversation is navigation.js's; main.js hands it over.
let navigate = { open() {} };

export function organiseStart(handlers) {
  navigate = handlers;
}

/** The menu is there while a stored conversation is on screen (repainted with the page's chrome). */
function paintConversationMenu() {
  const id = state.conversationId;
  menu.wrap.hidden = typeof id !== "number";
  if (menu.wrap.hidden) { closeMenu(); return; }
  const conversation = conversationById(id);
  menu.pin.textContent = conversation && conversation.pinned ? "Unpin chat" : "Pin chat";
  menu.archive.textContent = conversation && conversation.archived ? "Unarchive chat" : "Archive chat";
  menu.exportMd.href = urlWith(urls.export_md, id);
  menu.exportJson.href = urlWith(urls.export_json, id);
}

onChromeUpdate(paintConversationMenu);

function items() {
  return [...menu.list.querySelectorAll("[role=menuitem]")];
}

function openMenu() {
  paintConversationMenu();
  menu.list.hidden = false;
  menu.button.setAttribute("aria-expanded", "true");
  items()[0].focus();
}

function closeMenu(focusButton) {
  if (menu.list.hidden) return;
  menu.list.hidden = true;
  menu.button.setAttribute("aria-expanded", "false");
  if (focusButton) menu.button.focus();
}

menu.button.addEventListener("click", () => (menu.list.hidden ? openMenu() : closeMenu(true)));
menu.list.addEventListener("keydown", (event) => {
  const all = items();
  const at = all.indexOf(document.activeElement);
  if (event.key === "Escape") { event.preventDefault(); closeMenu(true); }
  if (event.key === "ArrowDown") { event.preventDefault(); all[(at + 1) % all.length].focus(); }
  if (event.key === "ArrowUp") { event.preventDefault(); all[(at - 1 + all.length) % all.length].focus(); }
});
document.addEventListener("click", (event) => { if (!menu.wrap.contains(event.target)) closeMenu(false); });
for (const link of [menu.exportMd, menu.exportJson]) link.addEventListener("click", () => closeMenu(false));

async function setFlag(url, name, value, said) {
  closeMenu(false);
  try {
    const data = await postForm(urlWith(url, state.conversationId), { [name]: value ? "true" : "false" });
    upsertConversation(data.conversation, false);
    paintConversationMenu();
    announce(said);
  } catch (error) {
    showComposerError(`Could not change the chat: ${error.message}`);
  }
}

menu.pin.addEventListener("click", () => {
  const pinned = !conversationById(state.conversationId)?.pinned;
  setFlag(urls.pin, "pinned", pinned, pinned ? "Pinned." : "Unpinned.");
});
menu.archive.addEventListener("click", () => {
  const archived = !conversationById(state.conversationId)?.archived;
  setFlag(urls.archive, "archived", archived, archived ? "Archived: find it under Archived in the sidebar." : "Unarchived.");
});

// ------------------------------------------------------------------ sharing

let sharedId = null;

menu.share.addEventListener("click", async () => {
  closeMenu(false);
  sharedId = state.conversationId;
  try {
    const data = await postForm(urlWith(urls.share, sharedId));
    share.url.value = data.share.url;
  } catch (error) {
    showComposerError(`Could not share the chat: ${error.message}`);
    return;
  }
  share.text.textContent = SHARE_TEXT;
  share.url.hidden = share.copy.hidden = share.revoke.hidden = false;
  share.dialog.showModal();
  share.url.select();
});

share.copy.addEventListener("click", async () => {
  if (await copyText(share.url.value)) flashCopied(share.copy, "Copy link");
});

share.revoke.addEventListener("click", async () => {
  try {
    await postForm(urlWith(urls.unshare, sharedId));
  } catch (error) {
    share.text.textContent = `Could not stop sharing: ${error.message}`;
    return;
  }
  share.text.textContent = "Sharing stopped: the link no longer works. Sharing again makes a new link.";
  share.url.value = "";
  share.url.hidden = share.copy.hidden = share.revoke.hidden = true;
  announce("Sharing stopped.");
});

// ------------------------------------------------------------------ import

importFile.addEventListener("change", async () => {
  const file = importFile.files[0];
  importFile.value = "";
  if (!file) return;
  const body = new FormData();
  body.append("file", file);
  try {
    const data = await postForm(urls.import, body);
    upsertConversation(data.conversation, true);
    navigate.open(data.conversation.id, true);
    announce(`Imported ${data.conversation.title}.`);
  } catch (error) {
    showComposerError(`Could not import the chat: ${error.message}`);
  }
});

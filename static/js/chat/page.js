/* The page as the server rendered it: the bootstrap data (chat/views.py `chat_page`)
 * and the elements of templates/chat/chat.html this code works with. */

export const boot = JSON.parse(document.getElementById("bootstrap").textContent);
export const urls = boot.urls;

const $ = (id) => document.getElementById(id);

export const el = {
  app: $("app"),
  sidebar: $("sidebar"),
  scrim: $("scrim"),
  menuButton: $("menu-button"),
  sidebarClose: $("sidebar-close"),
  newChat: $("new-chat"),
  search: $("search"),
  groups: $("conversation-groups"),
  historyEmpty: $("history-empty"),
  modelPicker: $("model-picker"),
  modelButton: $("model-button"),
  modelButtonName: $("model-button-name"),
  modelList: $("model-list"),
  connection: $("connection-banner"),
  connectionText: $("connection-text"),
  scroller: $("thread-scroll"),
  empty: $("empty-state"),
  emptySub: $("empty-sub"),
  loading: $("loading-state"),
  messages: $("messages"),
  toBottom: $("to-bottom"),
  pageNotice: $("page-notice"),
  fewLeft: $("few-left"),
  fewLeftText: $("few-left-text"),
  fewLeftClose: $("few-left-close"),
  quotaBanner: $("quota-banner"),
  quotaBannerText: $("quota-banner-text"),
  switchButton: $("switch-button"),
  quotaBannerClose: $("quota-banner-close"),
  composerError: $("composer-error"),
  composer: $("composer"),
  prompt: $("prompt"),
  attachButton: $("attach-button"),
  attachInput: $("attach-input"),
  attachmentChips: $("attachment-chips"),
  sendButton: $("send-button"),
  stopButton: $("stop-button"),
  quotaHint: $("quota-hint"),
  effortControl: $("effort-control"),
  effort: $("effort"),
  instructionsNote: $("instructions-note"),
  instructionsButton: $("instructions-button"),
  instructionsDialog: $("instructions-dialog"),
  instructionsText: $("instructions-text"),
  instructionsError: $("instructions-error"),
  deleteDialog: $("delete-dialog"),
  deleteName: $("delete-name"),
  announcer: $("announcer"),
};

/** Say `text` to screen readers. */
export function announce(text) {
  el.announcer.textContent = "";
  window.setTimeout(() => { el.announcer.textContent = text; }, 50);
}

export function setTitle(title) {
  document.title = `${title || "New chat"} · Chat`;
}

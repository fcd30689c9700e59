/* Files for the next message: picked with the paperclip or dropped on the box, uploaded
 * at once (POST with the CSRF token), shown as chips above the box and sent by id.
 * Images are offered only for models whose catalog entry takes them; the server checks
 * everything again (chat/files.py, chat/actions.py). Also how a message's files show. */
import { showComposerError, updateChrome } from "./chrome.js";
import { h, icon } from "./dom.js";
import { numberFormat } from "./format.js";
import { postFile, postForm } from "./http.js";
import { boot, el, urls } from "./page.js";
import { modelName } from "./picker.js";
import { state } from "./state.js";

const limits = boot.attachments;
const IMAGE_TYPES = "image/png,image/jpeg,image/gif,image/webp";
// What the file dialog offers; anything that is UTF-8 text is taken, whatever its name.
const TEXT_TYPES = "text/*,.md,.markdown,.csv,.tsv,.log,.json,.jsonl,.yaml,.yml,.toml,.ini,.xml,.sql,.sh,.py,.js,.mjs,.ts,.tsx,.jsx,.java,.kt,.c,.h,.cpp,.hpp,.cs,.go,.rs,.rb,.php,.swift,.r,.m,.html,.css,.scss,.tex,.diff,.patch";

export function takesImages(model) {
  return limits.image_models.includes(model);
}

export function sizeLabel(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${numberFormat.format(Math.round(bytes / 1024))} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** The uploaded files, taken for a send: the chips empty. */
export function takeAttachments() {
  const files = state.attachments.filter((a) => !a.uploading);
  state.attachments = state.attachments.filter((a) => a.uploading);
  paintChips();
  return files;
}

/** A refused send gives its files back. */
export function restoreAttachments(files) {
  state.attachments.push(...files.filter((f) => !state.attachments.some((a) => a.id === f.id)));
  paintChips();
}

export function stillUploading() {
  return state.attachments.some((a) => a.uploading);
}

/** Why the files cannot go with `model`, or "". */
export function attachmentProblem(files, model) {
  const image = files.find((f) => f.kind === "image");
  if (image && !takesImages(model)) return `${modelName(model)} does not take images. Remove ${image.name} or pick a model that takes images.`;
  return "";
}

async function upload(file) {
  if (state.attachments.length >= limits.per_message) {
    showComposerError(`A message can carry up to ${limits.per_message} files.`);
    return;
  }
  if (file.type.startsWith("image/") && !takesImages(state.model)) {
    showComposerError(`${modelName(state.model)} does not take images; pick a model that does, or attach text files.`);
    return;
  }
  if (file.size > limits.max_bytes) {
    showComposerError(`${file.name} is ${sizeLabel(file.size)}; a file may be at most ${sizeLabel(limits.max_bytes)}.`);
    return;
  }
  const placeholder = { uploading: true, name: file.name, size: file.size };
  state.attachments.push(placeholder);
  paintChips();
  try {
    const { attachment } = await postFile(urls.attachments, file);
    const index = state.attachments.indexOf(placeholder);
    if (index >= 0) state.attachments[index] = attachment;
    else postForm(urls.attachment_remove.replace("{id}", attachment.id)).catch(() => {}); // removed meanwhile
  } catch (error) {
    state.attachments = state.attachments.filter((a) => a !== placeholder);
    showComposerError(error.message);
  }
  paintChips();
}

function remove(file) {
  state.attachments = state.attachments.filter((a) => a !== file);
  if (file.id) postForm(urls.attachment_remove.replace("{id}", file.id)).catch(() => {});
  paintChips();
  el.prompt.focus();
}

function paintChips() {
  el.attachmentChips.replaceChildren(...state.attachments.map((file) => h("li", {
    className: `chip${file.uploading ? " is-uploading" : ""}`,
  }, [
    file.kind === "image" ? h("img", { className: "chip-thumb", src: file.url, alt: "" }) : icon("file"),
    h("span", { className: "chip-name", text: file.name }),
    h("span", { className: "chip-size", text: file.uploading ? "uploading…" : sizeLabel(file.size) }),
    h("button", {
      type: "button", className: "icon-btn chip-remove", "aria-label": `Remove ${file.name}`,
      onclick: () => remove(file),
    }, [icon("close")]),
  ])));
  el.attachmentChips.hidden = state.attachments.length === 0;
  updateChrome();
}

function uploadAll(files) {
  showComposerError("");
  for (const file of files) upload(file);
}

el.attachButton.addEventListener("click", () => {
  el.attachInput.accept = takesImages(state.model) ? `${TEXT_TYPES},${IMAGE_TYPES}` : TEXT_TYPES;
  el.attachInput.click();
});
el.attachInput.addEventListener("change", () => {
  uploadAll([...el.attachInput.files]);
  el.attachInput.value = "";
});
el.composer.addEventListener("dragover", (event) => {
  if (![...event.dataTransfer.types].includes("Files")) return;
  event.preventDefault();
  el.composer.classList.add("is-dropping");
});
el.composer.addEventListener("dragleave", () => el.composer.classList.remove("is-dropping"));
el.composer.addEventListener("drop", (event) => {
  el.composer.classList.remove("is-dropping");
  if (!event.dataTransfer.files.length) return;
  event.preventDefault();
  uploadAll([...event.dataTransfer.files]);
});

/** A sent message's files: images as thumbnails, text files as chips; each links to its download. */
export function attachmentList(files) {
  return h("ul", { className: "msg-files", "aria-label": "Attached files" }, files.map((file) => h("li", null, [
    file.kind === "image"
      ? h("a", { className: "file-thumb", href: file.url, target: "_blank", rel: "noopener", title: file.name },
        [h("img", { src: file.url, alt: file.name, loading: "lazy" })])
      : h("a", { className: "chip file-chip", href: `${file.url}?download`, download: file.name }, [
        icon("file"), h("span", { className: "chip-name", text: file.name }),
        h("span", { className: "chip-size", text: sizeLabel(file.size) }),
      ]),
  ])));
}

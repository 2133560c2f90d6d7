// BiMediX2 web chat: plain JS, no build step. Talks to the same OpenAI-compatible API as any client.
// Markdown: markdown-it (html: false) then DOMPurify, both vendored under /static/vendor/.
// Conversations live in this browser's localStorage only; nothing goes to any host but this server.
"use strict";

const STRINGS = {
  en: {
    title: "BiMediX2 medical chat",
    notice: "Research use only: answers are not medical advice and are not for clinical use.",
    settings: "Settings", apiKey: "API key", temperature: "Temperature", maxTokens: "Max tokens",
    attach: "Image", attachLabel: "Attach an image (PNG, JPEG or DICOM)", remove: "Remove", send: "Send",
    stop: "Stop", newChat: "New chat", conversations: "Conversations", conversationList: "Saved conversations",
    messages: "Messages", promptLabel: "Your message", skip: "Skip to the message box",
    placeholder: "Ask in English or Arabic…", toggle: "العربية", dark: "Dark mode",
    privacy: "Conversations, their text and small images stay in this browser on this device (localStorage); "
      + "nothing is sent anywhere except to this server when you ask. Images over 256 KB are kept for this session only.",
    forget: "Forget everything", forgetConfirm: "Delete every saved conversation and setting from this browser?",
    forgotten: "Everything saved in this browser was deleted.",
    keysHint: "Enter sends, Shift+Enter starts a new line, Esc stops. Drop or paste an image to attach it.",
    editing: "Editing your last message: sending replaces it and its answer.", cancel: "Cancel",
    copy: "Copy", copied: "Copied", copyLabel: "Copy this answer", regenerate: "Regenerate",
    regenerateLabel: "Regenerate the last answer", edit: "Edit", editLabel: "Edit and resend your last message",
    deleteConv: "Delete", deleteLabel: "Delete conversation", untitled: "New conversation",
    window: "Window", windowDefault: "From the file", wLung: "Lung", wMediastinum: "Mediastinum", wBone: "Bone",
    wBrain: "Brain", wAbdomen: "Abdomen", frame: "Frame",
    dicomNote: "The preview uses the file's own window. The window and frame chosen here go with the request "
      + "and apply to every image in it (the API also takes them per image; this page sends them per request).",
    imageNotKept: "Not kept after this session (over 256 KB): it stays only while this page is open.",
    imageGone: "Image not kept (it was over 256 KB), so it is no longer sent with this conversation.",
    generating: "Generating an answer…", answerDone: "Answer complete.", stopped: "Stopped.",
    stoppedNote: "(stopped)", dropHere: "Drop the image to attach it",
    errEmpty: "Type a question first.", errImageType: "Only PNG, JPEG or DICOM images can be attached.",
    errNetwork: "The server could not be reached.", errPreview: "No preview for this image",
    errStorage: "This browser refused to save the conversation (storage full or disabled).",
    errClipboard: "The browser did not allow copying.",
    you: "You", assistant: "BiMediX2",
  },
  ar: {
    title: "بايميديكس2 للمحادثة الطبية",
    notice: "للاستخدام البحثي فقط: الإجابات ليست استشارة طبية ولا تصلح للاستخدام السريري.",
    settings: "الإعدادات", apiKey: "مفتاح الواجهة", temperature: "درجة العشوائية", maxTokens: "أقصى عدد من الرموز",
    attach: "صورة", attachLabel: "إرفاق صورة (PNG أو JPEG أو DICOM)", remove: "إزالة", send: "إرسال",
    stop: "إيقاف", newChat: "محادثة جديدة", conversations: "المحادثات", conversationList: "المحادثات المحفوظة",
    messages: "الرسائل", promptLabel: "رسالتك", skip: "انتقل إلى مربع الرسالة",
    placeholder: "اسأل بالعربية أو بالإنجليزية…", toggle: "English", dark: "الوضع الداكن",
    privacy: "تبقى المحادثات ونصوصها والصور الصغيرة في هذا المتصفح على هذا الجهاز (التخزين المحلي)؛ "
      + "لا يُرسل شيء إلا إلى هذا الخادم عندما تسأل. الصور الأكبر من 256 كيلوبايت تُحفظ لهذه الجلسة فقط.",
    forget: "احذف كل شيء", forgetConfirm: "هل تريد حذف كل المحادثات والإعدادات المحفوظة في هذا المتصفح؟",
    forgotten: "حُذف كل ما كان محفوظاً في هذا المتصفح.",
    keysHint: "Enter للإرسال، Shift+Enter لسطر جديد، Esc للإيقاف. اسحب صورة أو الصقها لإرفاقها.",
    editing: "تعديل رسالتك الأخيرة: الإرسال يستبدلها ويستبدل إجابتها.", cancel: "إلغاء",
    copy: "نسخ", copied: "نُسخت", copyLabel: "نسخ هذه الإجابة", regenerate: "أعد التوليد",
    regenerateLabel: "أعد التوليد للإجابة الأخيرة", edit: "تعديل", editLabel: "تعديل رسالتك الأخيرة وإعادة إرسالها",
    deleteConv: "حذف", deleteLabel: "احذف المحادثة", untitled: "محادثة جديدة",
    window: "النافذة", windowDefault: "من الملف", wLung: "الرئة", wMediastinum: "المنصف", wBone: "العظم",
    wBrain: "الدماغ", wAbdomen: "البطن", frame: "الإطار",
    dicomNote: "المعاينة تستخدم نافذة الملف نفسه. النافذة والإطار المختاران هنا يُرسلان مع الطلب "
      + "ويسريان على كل صوره (تقبل الواجهة البرمجية أيضاً قيمة لكل صورة؛ هذه الصفحة ترسلهما لكل طلب).",
    imageNotKept: "لن تُحفظ بعد هذه الجلسة (أكبر من 256 كيلوبايت): تبقى ما دامت الصفحة مفتوحة.",
    imageGone: "لم تُحفظ الصورة (كانت أكبر من 256 كيلوبايت)، لذا لم تعد تُرسل مع هذه المحادثة.",
    generating: "جارٍ توليد الإجابة…", answerDone: "اكتملت الإجابة.", stopped: "أُوقف التوليد.",
    stoppedNote: "(أُوقف)", dropHere: "أفلت الصورة لإرفاقها",
    errEmpty: "اكتب سؤالاً أولاً.", errImageType: "يمكن إرفاق صور PNG أو JPEG أو DICOM فقط.",
    errNetwork: "تعذر الوصول إلى الخادم.", errPreview: "لا تتوفر معاينة لهذه الصورة",
    errStorage: "رفض المتصفح حفظ المحادثة (التخزين ممتلئ أو معطّل).",
    errClipboard: "لم يسمح المتصفح بالنسخ.",
    you: "أنت", assistant: "بايميديكس2",
  },
};

const STORE = { conversations: "bimedix2-conversations", current: "bimedix2-current",
                lang: "bimedix2-lang", theme: "bimedix2-theme" };
const KEEP_IMAGE_LIMIT = 256 * 1024;  // data-URL characters; bigger images stay in memory for this session

// Same rule as bimedix2.conversation.detect_language: Arabic when >= 30% of the letters are Arabic script.
const ARABIC = /[\u0620-\u064A\u066E-\u06D3\u06FA-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFC]/g;
const LATIN = /[A-Za-z\u00C0-\u024F]/g;
function detectLanguage(text) {
  const arabic = (text.match(ARABIC) || []).length;
  const latin = (text.match(LATIN) || []).length;
  if (arabic === 0) return "en";
  return arabic >= 0.3 * (arabic + latin) ? "ar" : "en";
}
function setDirection(el, text) {
  el.dir = detectLanguage(text) === "ar" ? "rtl" : "ltr";
}

const $ = (id) => document.getElementById(id);
const state = {
  lang: "en", model: null, busy: false, controller: null, image: null, editing: null,
  conversations: [], currentId: null,
  sessionImages: new Map(),  // image id -> { dataUrl, previewSrc } for this page's lifetime
};

function t(key) { return STRINGS[state.lang][key]; }

// ------------------------------------------------------------------ markdown (markdown-it + DOMPurify)
// Without the vendored files (a package built without serve/web/vendor/) answers are shown as plain text.
const HAVE_MARKDOWN = typeof window.markdownit === "function" && typeof window.DOMPurify === "function";
const md = HAVE_MARKDOWN ? window.markdownit({ html: false, linkify: false, breaks: true, typographer: false }) : null;
if (md) md.disable("image");  // an answer must not make the browser fetch anything from any host
if (HAVE_MARKDOWN) DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") { node.setAttribute("target", "_blank"); node.setAttribute("rel", "noopener noreferrer"); }
  if (/^(P|LI|H[1-6]|TD|TH|BLOCKQUOTE)$/.test(node.tagName)) node.setAttribute("dir", "auto");
  if (node.tagName === "PRE") node.setAttribute("dir", "ltr");
});
const PURIFY = { USE_PROFILES: { html: true }, FORBID_TAGS: ["img", "style", "form", "input", "button", "svg", "math"],
                 FORBID_ATTR: ["style", "srcset"] };
function renderMarkdown(el, text) {
  if (!HAVE_MARKDOWN) { el.textContent = text; el.style.whiteSpace = "pre-wrap"; return; }
  el.innerHTML = DOMPurify.sanitize(md.render(text), PURIFY);
}

// ------------------------------------------------------------------ storage
function storageGet(key) { try { return localStorage.getItem(key); } catch (e) { return null; } }
function storageSet(key, value) {
  try { localStorage.setItem(key, value); return true; } catch (e) { return false; }
}
function loadConversations() {
  try {
    const list = JSON.parse(storageGet(STORE.conversations) || "[]");
    state.conversations = Array.isArray(list) ? list.filter((c) => c && Array.isArray(c.messages)) : [];
  } catch (e) { state.conversations = []; }
  state.currentId = storageGet(STORE.current);
}
function saveConversations() {
  const stored = state.conversations.filter((c) => c.messages.length > 0);
  const ok = storageSet(STORE.conversations, JSON.stringify(stored)) && storageSet(STORE.current, state.currentId || "");
  if (!ok) showError(t("errStorage"));
}
function newId() { return Date.now().toString(36) + Math.random().toString(36).slice(2, 8); }
function current() {
  let conv = state.conversations.find((c) => c.id === state.currentId);
  if (!conv) {
    conv = { id: newId(), title: "", updated: Date.now(), messages: [] };
    state.conversations.unshift(conv);
    state.currentId = conv.id;
  }
  return conv;
}
function imageSrc(image) {
  const mem = state.sessionImages.get(image.id);
  if (mem) return { dataUrl: mem.dataUrl, previewSrc: mem.previewSrc };
  if (image.dataUrl) return { dataUrl: image.dataUrl, previewSrc: image.mime === "application/dicom" ? "" : image.dataUrl };
  return null;
}

// ------------------------------------------------------------------ language, theme
function applyLanguage(lang) {
  state.lang = lang;
  document.documentElement.lang = lang;
  document.documentElement.dir = lang === "ar" ? "rtl" : "ltr";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  document.querySelectorAll("[data-i18n-aria]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nAria)); });
  $("lang-toggle").textContent = t("toggle");
  $("lang-toggle").lang = lang === "ar" ? "en" : "ar";
  $("composer").dataset.dropLabel = t("dropHere");
  applyTheme(document.documentElement.dataset.theme || null, false);
  storageSet(STORE.lang, lang);
  if (state.image) showAttachmentNote();
  if (!state.busy) renderMessages();
  renderConversationList();
}
function effectiveTheme() {
  const set = document.documentElement.dataset.theme;
  if (set) return set;
  return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}
function applyTheme(theme, remember) {
  if (theme) document.documentElement.dataset.theme = theme;
  const dark = effectiveTheme() === "dark";
  $("theme-toggle").setAttribute("aria-pressed", String(dark));  // a toggle button: fixed label, pressed state
  if (remember && theme) storageSet(STORE.theme, theme);
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  setDirection(box, message);
  box.hidden = false;
}
function clearError() { $("error").hidden = true; $("error").textContent = ""; }
function announce(text) { $("status").textContent = text; }

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return `${response.status}: ${body.error.message}`;
  } catch (e) { /* not JSON */ }
  return `${response.status}: ${response.statusText}`;
}

// ------------------------------------------------------------------ rendering
function actionButton(cls, label, aria, onClick) {
  const b = document.createElement("button");
  b.type = "button"; b.className = "action " + cls; b.textContent = label;
  b.setAttribute("aria-label", aria);
  b.addEventListener("click", onClick);
  return b;
}

function messageElement(msg, index, isLast, lastUserIndex) {
  const el = document.createElement("article");
  el.className = "msg " + msg.role;
  el.setAttribute("aria-label", msg.role === "user" ? t("you") : t("assistant"));
  if (msg.image) {
    const src = imageSrc(msg.image);
    if (src && src.previewSrc) {
      const img = document.createElement("img");
      img.src = src.previewSrc; img.alt = msg.image.name || "";
      el.appendChild(img);
    } else if (src) {
      const tag = document.createElement("span");
      tag.className = "note"; tag.textContent = "🖼 " + msg.image.name;
      el.appendChild(tag);
    }
    if (!msg.image.kept) {
      const note = document.createElement("span");
      note.className = "note image-note";
      note.textContent = src ? `${msg.image.name}: ${t("imageNotKept")}` : `${msg.image.name}: ${t("imageGone")}`;
      el.appendChild(note);
    }
  }
  const body = document.createElement("div");
  body.className = "text";
  if (msg.role === "assistant") { body.classList.add("md"); renderMarkdown(body, msg.text); }
  else body.textContent = msg.text;
  el.appendChild(body);
  setDirection(el, msg.text);
  if (msg.role === "assistant") {
    el.dataset.state = msg.stopped ? "stopped" : "done";
    el.dataset.chunks = String(msg.chunks || 0);
    if (msg.stopped) {
      const s = document.createElement("span"); s.className = "note"; s.textContent = t("stoppedNote"); el.appendChild(s);
    }
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  if (msg.role === "assistant") {
    actions.appendChild(actionButton("copy", t("copy"), t("copyLabel"), (e) => copyAnswer(msg.text, e.target)));
    if (isLast) actions.appendChild(actionButton("regenerate", t("regenerate"), t("regenerateLabel"), regenerate));
  } else if (index === lastUserIndex) {
    actions.appendChild(actionButton("edit", t("edit"), t("editLabel"), () => startEdit(index)));
  }
  if (actions.childElementCount) el.appendChild(actions);
  if (state.editing === index) el.classList.add("editing");
  return el;
}

function renderMessages() {
  const conv = state.conversations.find((c) => c.id === state.currentId);
  const box = $("messages");
  box.replaceChildren();
  if (!conv) return;
  let lastUser = -1;
  conv.messages.forEach((m, i) => { if (m.role === "user") lastUser = i; });
  conv.messages.forEach((m, i) => box.appendChild(messageElement(m, i, i === conv.messages.length - 1, lastUser)));
  box.scrollTop = box.scrollHeight;
}

function renderConversationList() {
  const list = $("conv-list");
  list.replaceChildren();
  for (const conv of state.conversations) {
    if (conv.messages.length === 0 && conv.id !== state.currentId) continue;
    const li = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button"; open.className = "conv";
    open.textContent = conv.title || t("untitled");
    open.dir = "auto";
    if (conv.id === state.currentId) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => switchTo(conv.id));
    const del = document.createElement("button");
    del.type = "button"; del.className = "conv-delete"; del.textContent = "×";
    del.setAttribute("aria-label", `${t("deleteLabel")}: ${conv.title || t("untitled")}`);
    del.addEventListener("click", () => deleteConversation(conv.id));
    li.append(open, del);
    list.appendChild(li);
  }
}

// ------------------------------------------------------------------ images
function isDicom(file, bytes) {
  if (/\.dcm$/i.test(file.name || "") || file.type === "application/dicom") return true;
  return bytes.length > 132 && String.fromCharCode(...bytes.slice(128, 132)) === "DICM";
}

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function showAttachmentNote() {
  const img = state.image;
  const notes = [];
  if (img.mime === "application/dicom") notes.push(t("dicomNote"));
  if (img.dataUrl.length > KEEP_IMAGE_LIMIT) notes.push(t("imageNotKept"));
  $("attachment-note").textContent = notes.join(" ");
}

async function attachFile(file) {
  clearError();
  if (!file) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  let mime;
  if (isDicom(file, bytes)) mime = "application/dicom";
  else if (file.type === "image/png" || file.type === "image/jpeg") mime = file.type;
  else { showError(t("errImageType")); return; }
  const dataUrl = `data:${mime};base64,${toBase64(bytes)}`;
  let previewSrc = dataUrl;
  if (mime === "application/dicom") {  // browsers cannot draw DICOM: the server renders a PNG preview
    previewSrc = "";
    try {
      const r = await fetch("/v1/bimedix2/preview", { method: "POST", headers: { ...headers(), "Content-Type": "application/dicom" }, body: bytes });
      if (r.ok) previewSrc = URL.createObjectURL(await r.blob());
      else showError(`${t("errPreview")}: ${await errorText(r)}`);
    } catch (e) { showError(t("errNetwork")); }
  }
  setAttachment({ id: newId(), dataUrl, previewSrc, name: file.name || "image", mime, window: "", frame: "" });
}

function setAttachment(image) {
  state.image = image;
  if (image.previewSrc) $("preview").src = image.previewSrc; else $("preview").removeAttribute("src");
  $("preview").alt = image.name;
  $("attachment-name").textContent = image.name;
  const dicom = image.mime === "application/dicom";
  $("dicom-controls").hidden = !dicom;
  $("dicom-window").value = image.window || "";
  $("dicom-frame").value = image.frame === "" || image.frame == null ? "" : String(image.frame);
  showAttachmentNote();
  $("attachment").hidden = false;
}

function removeImage() {
  state.image = null;
  $("preview").removeAttribute("src");
  $("attachment").hidden = true;
}

// ------------------------------------------------------------------ chat
function toApiMessages(conv) {
  return conv.messages.map((m) => {
    if (m.role === "user" && m.image) {
      const src = imageSrc(m.image);
      if (src) return { role: "user", content: [{ type: "text", text: m.text }, { type: "image_url", image_url: { url: src.dataUrl } }] };
    }
    return { role: m.role, content: m.text };
  });
}

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  document.querySelectorAll(".action").forEach((b) => { b.disabled = busy; });
}

async function send(event) {
  if (event) event.preventDefault();
  if (state.busy) return;
  clearError();
  const text = $("prompt").value.trim();
  if (!text) { showError(t("errEmpty")); return; }
  const conv = current();
  const removed = state.editing !== null ? conv.messages.splice(state.editing) : [];
  const wasEditing = state.editing;
  state.editing = null; $("edit-banner").hidden = true;
  const userMessage = { role: "user", text };
  let image = null;
  if (state.image) {
    image = state.image;
    image.window = $("dicom-window").value;
    image.frame = $("dicom-frame").value;
    const kept = image.dataUrl.length <= KEEP_IMAGE_LIMIT;
    userMessage.image = { id: image.id, name: image.name, mime: image.mime, kept,
                          dataUrl: kept ? image.dataUrl : null, window: image.window, frame: image.frame };
    state.sessionImages.set(image.id, { dataUrl: image.dataUrl, previewSrc: image.previewSrc });
  }
  conv.messages.push(userMessage);
  if (!conv.title) conv.title = text.slice(0, 60);
  renderMessages(); renderConversationList();
  const ok = await generate(conv, () => { $("prompt").value = ""; removeImage(); });
  if (!ok) {  // nothing was answered: the conversation is as it was, the question stays in the box
    conv.messages.pop();
    conv.messages.push(...removed);
    if (wasEditing !== null && removed.length) { state.editing = wasEditing; $("edit-banner").hidden = false; }
    if (image && !state.image) setAttachment(image);
    if (!$("prompt").value) $("prompt").value = text;  // stopped before the first word
    if (conv.messages.length === 0) conv.title = "";
    renderMessages(); renderConversationList();
  }
}

async function regenerate() {
  if (state.busy) return;
  clearError();
  const conv = current();
  const last = conv.messages[conv.messages.length - 1];
  if (!last || last.role !== "assistant") return;
  conv.messages.pop();
  renderMessages();
  const ok = await generate(conv, () => {});
  if (!ok) { conv.messages.push(last); renderMessages(); }
}

function startEdit(index) {
  if (state.busy) return;
  const conv = current();
  const msg = conv.messages[index];
  state.editing = index;
  $("prompt").value = msg.text;
  setDirection($("prompt"), msg.text);
  removeImage();
  if (msg.image) {
    const src = imageSrc(msg.image);
    if (src) setAttachment({ ...msg.image, dataUrl: src.dataUrl, previewSrc: src.previewSrc });
  }
  $("edit-banner").hidden = false;
  renderMessages();
  $("prompt").focus();
}

function cancelEdit() {
  state.editing = null;
  $("edit-banner").hidden = true;
  $("prompt").value = "";
  removeImage();
  renderMessages();
}

// Streams one answer to the end of `conv`; true when something was answered (kept), false otherwise.
async function generate(conv, onAccepted) {
  const lastUser = [...conv.messages].reverse().find((m) => m.role === "user");
  const body = {
    model: state.model || "bimedix2", messages: toApiMessages(conv), stream: true,
    temperature: Number($("temperature").value), max_tokens: Number($("max-tokens").value),
  };
  if (lastUser && lastUser.image && lastUser.image.mime === "application/dicom" && imageSrc(lastUser.image)) {
    if (lastUser.image.window) body.dicom_window = lastUser.image.window;
    if (lastUser.image.frame !== "" && lastUser.image.frame != null) body.dicom_frame = Number(lastUser.image.frame);
  }
  const msg = { role: "assistant", text: "", chunks: 0 };
  const bubble = messageElement(msg, -1, false, -2);
  bubble.dataset.state = "streaming";
  bubble.setAttribute("aria-busy", "true");
  bubble.querySelector(".actions") && bubble.querySelector(".actions").remove();
  $("messages").appendChild(bubble);
  bubble.scrollIntoView({ block: "end" });
  const textEl = bubble.querySelector(".text");
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  announce(t("generating"));
  let failed = null;
  let stopped = false;
  let pending = false;
  const paint = () => { pending = false; renderMarkdown(textEl, msg.text); setDirection(bubble, msg.text); };
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) failed = await errorText(response);
    else {
      onAccepted();
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const line = buffer.slice(0, cut).trim();
          buffer = buffer.slice(cut + 2);
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) { failed = chunk.error.message; continue; }
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) {
            msg.text += delta.content;
            msg.chunks += 1;
            bubble.dataset.chunks = String(msg.chunks);
            if (!pending) { pending = true; requestAnimationFrame(paint); }
          }
        }
      }
    }
  } catch (e) {
    if (controller.signal.aborted) stopped = true;  // the server cancels the row when the stream is dropped
    else failed = t("errNetwork");
  }
  state.controller = null;
  setBusy(false);
  bubble.remove();
  if (stopped && msg.text) msg.stopped = true;
  const kept = !!msg.text;  // a partial answer (stopped, or cut by an error) is kept and marked
  if (kept) {
    conv.messages.push(msg);
    conv.updated = Date.now();
    state.conversations.sort((a, b) => (b.updated || 0) - (a.updated || 0));
  }
  if (failed) showError(failed);
  // the live region reads the finished answer once (not token by token)
  announce(stopped ? `${t("stopped")} ${msg.text}` : failed ? "" : `${t("answerDone")} ${msg.text}`);
  // a conversation deleted (or everything forgotten) while it streamed stays deleted
  if ((kept || stopped) && state.conversations.includes(conv)) { saveConversations(); renderMessages(); renderConversationList(); }
  $("prompt").focus();
  return kept;
}

function stop() {
  if (state.controller) state.controller.abort();
}

async function copyAnswer(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = t("copied");
    announce(t("copied"));
    setTimeout(() => { button.textContent = t("copy"); }, 1500);
  } catch (e) { showError(t("errClipboard")); }
}

// ------------------------------------------------------------------ conversations
function newChat() {
  if (state.busy) stop();
  state.editing = null; $("edit-banner").hidden = true;
  state.currentId = null;
  current();
  saveConversations();
  renderMessages(); renderConversationList();
  removeImage(); clearError();
  closeSidebarOnPhone();
  $("prompt").focus();
}
function switchTo(id) {
  if (state.busy) stop();
  state.editing = null; $("edit-banner").hidden = true;
  state.conversations = state.conversations.filter((c) => c.messages.length > 0 || c.id === id);
  state.currentId = id;
  saveConversations();
  renderMessages(); renderConversationList(); clearError();
  closeSidebarOnPhone();
}
function deleteConversation(id) {
  if (state.busy && id === state.currentId) stop();
  state.conversations = state.conversations.filter((c) => c.id !== id);
  if (state.currentId === id) { state.currentId = state.conversations.length ? state.conversations[0].id : null; state.editing = null; }
  saveConversations();
  renderMessages(); renderConversationList();
}
function forgetEverything() {
  if (!window.confirm(t("forgetConfirm"))) return;
  if (state.busy) stop();
  try { Object.values(STORE).forEach((k) => localStorage.removeItem(k)); } catch (e) { /* storage disabled */ }
  for (const img of state.sessionImages.values()) if (img.previewSrc && img.previewSrc.startsWith("blob:")) URL.revokeObjectURL(img.previewSrc);
  state.sessionImages.clear();
  state.conversations = []; state.currentId = null; state.editing = null;
  $("edit-banner").hidden = true;
  $("api-key").value = ""; $("prompt").value = "";
  removeImage(); clearError();
  renderMessages(); renderConversationList();
  announce(t("forgotten"));
}

function closeSidebarOnPhone() {
  document.body.classList.remove("sidebar-open");
  $("sidebar-toggle").setAttribute("aria-expanded", "false");
}

// ------------------------------------------------------------------ start
async function init() {
  loadConversations();
  const theme = storageGet(STORE.theme);
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
  let lang = storageGet(STORE.lang) || ((navigator.language || "").startsWith("ar") ? "ar" : "en");
  if (!STRINGS[lang]) lang = "en";
  applyLanguage(lang);
  $("lang-toggle").addEventListener("click", () => applyLanguage(state.lang === "en" ? "ar" : "en"));
  $("theme-toggle").addEventListener("click", () => applyTheme(effectiveTheme() === "dark" ? "light" : "dark", true));
  if (window.matchMedia) window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(null, false));
  $("sidebar-toggle").addEventListener("click", () => {
    const open = document.body.classList.toggle("sidebar-open");
    $("sidebar-toggle").setAttribute("aria-expanded", String(open));
  });
  $("composer").addEventListener("submit", send);
  $("stop").addEventListener("click", stop);
  $("image-input").addEventListener("change", (e) => { const f = e.target.files[0]; e.target.value = ""; attachFile(f); });
  $("remove-image").addEventListener("click", removeImage);
  $("new-chat").addEventListener("click", newChat);
  $("forget").addEventListener("click", forgetEverything);
  $("cancel-edit").addEventListener("click", cancelEdit);
  $("prompt").addEventListener("input", (e) => setDirection(e.target, e.target.value));
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("prompt").addEventListener("paste", (e) => {
    const file = [...((e.clipboardData && e.clipboardData.files) || [])][0];
    if (file) { e.preventDefault(); attachFile(file); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    if (state.busy) { e.preventDefault(); stop(); }
    else if (document.body.classList.contains("sidebar-open")) { closeSidebarOnPhone(); $("sidebar-toggle").focus(); }
  });
  document.querySelector(".chat").addEventListener("click", closeSidebarOnPhone);
  const composer = $("composer");
  let depth = 0;
  document.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth += 1; composer.classList.add("dragging"); } });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) composer.classList.remove("dragging"); });
  document.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  document.addEventListener("drop", (e) => {
    depth = 0; composer.classList.remove("dragging");
    const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (file) { e.preventDefault(); if (!$("image-input").disabled) attachFile(file); }
  });
  if (state.conversations.length && !state.conversations.some((c) => c.id === state.currentId)) state.currentId = state.conversations[0].id;
  renderMessages(); renderConversationList();
  $("api-key").addEventListener("change", () => loadInfo(false));
  await loadInfo(true);
}
// A keyed server tells a page without its key only that a key is needed: ask again, with the
// key, once one is entered (the model name and vision support come with it).
async function loadInfo(first) {
  try {
    const info = await (await fetch("/api/info", { headers: headers() })).json();
    if (info.model) { state.model = info.model; $("model-name").textContent = info.model; }
    if (first && info.auth) $("settings").open = true;
    if (info.vision !== undefined) $("image-input").disabled = !info.vision;
  } catch (e) { showError(t("errNetwork")); }
}
function hasFiles(e) { return e.dataTransfer && [...(e.dataTransfer.types || [])].includes("Files"); }

document.addEventListener("DOMContentLoaded", init);

// BiMediX2 web chat: plain JS, no build step. Talks to the same OpenAI-compatible API as any client.
"use strict";

const STRINGS = {
  en: {
    title: "BiMediX2 medical chat",
    notice: "Research use only: answers are not medical advice and are not for clinical use.",
    settings: "Settings", apiKey: "API key", temperature: "Temperature", maxTokens: "Max tokens",
    attach: "Image", remove: "Remove", send: "Send", newChat: "New chat",
    placeholder: "Ask in English or Arabic…", toggle: "العربية",
    errEmpty: "Type a question first.", errImageType: "Only PNG, JPEG or DICOM images can be attached.",
    errNetwork: "The server could not be reached.", errPreview: "No preview for this image",
  },
  ar: {
    title: "بايميديكس2 للمحادثة الطبية",
    notice: "للاستخدام البحثي فقط: الإجابات ليست استشارة طبية ولا تصلح للاستخدام السريري.",
    settings: "الإعدادات", apiKey: "مفتاح الواجهة", temperature: "درجة العشوائية", maxTokens: "أقصى عدد من الرموز",
    attach: "صورة", remove: "إزالة", send: "إرسال", newChat: "محادثة جديدة",
    placeholder: "اسأل بالعربية أو بالإنجليزية…", toggle: "English",
    errEmpty: "اكتب سؤالاً أولاً.", errImageType: "يمكن إرفاق صور PNG أو JPEG أو DICOM فقط.",
    errNetwork: "تعذر الوصول إلى الخادم.", errPreview: "لا تتوفر معاينة لهذه الصورة",
  },
};

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
const state = { lang: "en", history: [], image: null, model: null, busy: false };

function t(key) { return STRINGS[state.lang][key]; }

function applyLanguage(lang) {
  state.lang = lang;
  document.documentElement.lang = lang;
  document.documentElement.dir = lang === "ar" ? "rtl" : "ltr";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  $("lang-toggle").textContent = t("toggle");
  $("lang-toggle").lang = lang === "ar" ? "en" : "ar";
  try { localStorage.setItem("bimedix2-lang", lang); } catch (e) { /* storage may be disabled */ }
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  setDirection(box, message);
  box.hidden = false;
}
function clearError() { $("error").hidden = true; $("error").textContent = ""; }

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

function addMessage(role, text, imageSrc) {
  const el = document.createElement("div");
  el.className = "msg " + role;
  if (imageSrc) {
    const img = document.createElement("img");
    img.src = imageSrc; img.alt = "";
    el.appendChild(img);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  el.appendChild(body);
  setDirection(el, text);
  $("messages").appendChild(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

// ------------------------------------------------------------------ images
function isDicom(file, bytes) {
  if (/\.dcm$/i.test(file.name) || file.type === "application/dicom") return true;
  return bytes.length > 132 && String.fromCharCode(...bytes.slice(128, 132)) === "DICM";
}

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

async function onImagePicked(event) {
  clearError();
  const file = event.target.files[0];
  event.target.value = "";
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
  state.image = { dataUrl, previewSrc, name: file.name };
  $("preview").src = previewSrc;
  $("preview").alt = file.name;
  $("attachment-name").textContent = file.name;
  $("attachment").hidden = false;
}

function removeImage() {
  state.image = null;
  $("preview").removeAttribute("src");
  $("attachment").hidden = true;
}

// ------------------------------------------------------------------ chat
async function send(event) {
  event.preventDefault();
  if (state.busy) return;
  clearError();
  const text = $("prompt").value.trim();
  if (!text) { showError(t("errEmpty")); return; }
  const content = state.image
    ? [{ type: "text", text }, { type: "image_url", image_url: { url: state.image.dataUrl } }]
    : text;
  const userMessage = { role: "user", content };
  const messages = [...state.history, userMessage];
  const body = {
    model: state.model || "bimedix2", messages, stream: true,
    temperature: Number($("temperature").value), max_tokens: Number($("max-tokens").value),
  };
  const userBubble = addMessage("user", text, state.image && state.image.previewSrc);
  const bubble = addMessage("assistant", "");
  bubble.dataset.state = "streaming";
  bubble.dataset.chunks = "0";
  state.busy = true; $("send").disabled = true;
  let reply = "";
  let failed = null;
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!response.ok) failed = await errorText(response);
    else {
      $("prompt").value = ""; removeImage();
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
            reply += delta.content;
            bubble.querySelector(".text").textContent = reply;
            bubble.dataset.chunks = String(Number(bubble.dataset.chunks) + 1);
            setDirection(bubble, reply);
          }
        }
      }
    }
  } catch (e) {
    failed = t("errNetwork");
  }
  if (failed) {
    bubble.classList.add("failed");
    bubble.dataset.state = "failed";
    if (!reply) { bubble.remove(); userBubble.remove(); }  // nothing was answered: the conversation is unchanged
    showError(failed);
  } else {
    bubble.dataset.state = "done";
    state.history.push(userMessage, { role: "assistant", content: reply });
  }
  state.busy = false; $("send").disabled = false;
}

function newChat() {
  state.history = [];
  $("messages").replaceChildren();
  removeImage();
  clearError();
}

async function init() {
  let lang = "en";
  try { lang = localStorage.getItem("bimedix2-lang") || (navigator.language || "").startsWith("ar") && "ar" || "en"; } catch (e) { /* ignore */ }
  applyLanguage(lang);
  $("lang-toggle").addEventListener("click", () => applyLanguage(state.lang === "en" ? "ar" : "en"));
  $("composer").addEventListener("submit", send);
  $("image-input").addEventListener("change", onImagePicked);
  $("remove-image").addEventListener("click", removeImage);
  $("new-chat").addEventListener("click", newChat);
  $("prompt").addEventListener("input", (e) => setDirection(e.target, e.target.value));
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  try {
    const info = await (await fetch("/api/info")).json();
    state.model = info.model;
    $("model-name").textContent = info.model;
    if (info.auth) $("settings").open = true;
    if (!info.vision) $("image-input").disabled = true;
  } catch (e) { showError(t("errNetwork")); }
}

document.addEventListener("DOMContentLoaded", init);

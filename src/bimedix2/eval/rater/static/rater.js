// The conversation rater page: one pair at a time, the choice saved as soon as it is made.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const WHO = { en: { user: "Patient", assistant: "Assistant" }, ar: { user: "المريض", assistant: "المساعد" } };
  let pairs = [];
  let ratings = {};
  let index = 0;

  function renderTurns(box, turns, lang) {
    const holder = box.querySelector(".turns");
    holder.replaceChildren();
    holder.lang = lang;
    holder.dir = lang === "ar" ? "rtl" : "ltr";
    for (const turn of turns) {
      const p = document.createElement("p");
      p.className = "turn " + turn.role;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = (WHO[lang] || WHO.en)[turn.role] + ":";
      p.append(who, document.createTextNode(" " + turn.content));  // text only: never HTML from a model
      holder.append(p);
    }
  }

  function progress() {
    const done = pairs.filter((p) => ratings[p.pair]).length;
    $("progress").textContent = `${done} of ${pairs.length} pairs rated`;
    for (const [i, p] of pairs.entries()) {
      $("jump").options[i].textContent = `${i + 1}. ${p.pair} (${p.language === "ar" ? "Arabic" : "English"})${ratings[p.pair] ? " ✓" : ""}`;
    }
  }

  function show(i) {
    index = Math.max(0, Math.min(pairs.length - 1, i));
    const pair = pairs[index];
    $("pair-title").textContent = `Pair ${index + 1} of ${pairs.length} (${pair.language === "ar" ? "Arabic" : "English"})`;
    $("pair").dataset.pair = pair.pair;
    renderTurns($("conv-A"), pair.A, pair.language);
    renderTurns($("conv-B"), pair.B, pair.language);
    for (const input of document.querySelectorAll("input[name=choice]")) input.checked = ratings[pair.pair] === input.value;
    $("jump").value = String(index);
    $("prev").disabled = index === 0;
    $("next").disabled = index === pairs.length - 1;
    $("status").textContent = ratings[pair.pair] ? `Saved: ${ratings[pair.pair]}` : "Not rated yet";
  }

  async function save(choice) {
    const pair = pairs[index].pair;
    $("status").textContent = "Saving…";
    const response = await fetch(`/api/ratings/${encodeURIComponent(pair)}`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ choice }),
    });
    if (!response.ok) {
      $("status").textContent = `Not saved (HTTP ${response.status}); choose again`;
      return;
    }
    ratings[pair] = choice;
    $("status").textContent = `Saved: ${choice}`;
    progress();
  }

  async function start() {
    const data = await (await fetch("/api/pairs")).json();
    pairs = data.pairs;
    ratings = data.ratings;
    $("rater-name").textContent = data.rater;
    $("notice").textContent = data.notice;
    const ar = document.createElement("span");
    ar.lang = "ar";
    ar.dir = "rtl";
    ar.textContent = " " + data.notice_ar;
    $("notice").append(ar);
    for (const [i] of pairs.entries()) $("jump").append(new Option(String(i + 1), String(i)));
    progress();
    if (pairs.length) show(0);
  }

  $("prev").addEventListener("click", () => show(index - 1));
  $("next").addEventListener("click", () => show(index + 1));
  $("jump").addEventListener("change", (e) => show(Number(e.target.value)));
  $("choice-form").addEventListener("change", (e) => { if (e.target.name === "choice") save(e.target.value); });
  document.body.dataset.ready = "0";
  start().then(() => { document.body.dataset.ready = "1"; });
})();

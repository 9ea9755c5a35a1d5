// aigc human evaluation: the page. Everything shown comes from the server as data and is set with textContent
// (or as a same-origin media URL), never parsed as HTML: prompts and outputs are untrusted text.
"use strict";

const $ = (id) => document.getElementById(id);
const KEYS = { ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right", ArrowDown: "tie", "3": "tie",
               t: "tie", T: "tie", b: "both_bad", B: "both_bad", "4": "both_bad" };
let rater = null;
let current = null;   // the task id on screen
let shownAt = 0;
let busy = false;

async function api(path, options) {
  const response = await fetch(path, options);
  let body = {};
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) { throw new Error(body.error || response.statusText); }
  return body;
}

function fill(box, output) {
  let el;
  if (output.kind === "text") {
    el = document.createElement("pre");
    el.textContent = output.text;
  } else if (output.kind === "image") {
    el = document.createElement("img");
    el.alt = "output";
    el.src = output.url;
  } else if (output.kind === "audio") {
    el = document.createElement("audio");
    el.controls = true;
    el.preload = "auto";
    el.src = output.url;
  } else {
    el = document.createElement("video");
    el.controls = true;
    el.loop = true;
    el.muted = true;
    el.autoplay = true;
    el.playsInline = true;
    el.src = output.url;
  }
  box.replaceChildren(el);
}

function render(data) {
  $("question").textContent = data.question;
  $("bar").max = Math.max(1, data.total);
  $("bar").value = data.done;
  $("progress-text").textContent = `${data.done} / ${data.total} done`;
  document.body.dataset.done = String(data.done);
  if (data.task === null) {
    current = null;
    $("compare").hidden = true;
    $("finished").hidden = false;
    return;
  }
  $("compare").hidden = false;
  $("finished").hidden = true;
  current = data.task;
  $("prompt").textContent = data.prompt;
  fill($("left-output"), data.left);
  fill($("right-output"), data.right);
  shownAt = performance.now();
}

async function begin(name) {
  rater = name;
  $("error").textContent = "";
  try {
    const data = await api("/api/next?rater=" + encodeURIComponent(rater));
    localStorage.setItem("aigc-rater", rater);
    $("rater-name").textContent = rater;
    $("login").hidden = true;
    $("who").hidden = false;
    $("main").hidden = false;
    render(data);
  } catch (e) {
    rater = null;
    $("error").textContent = e.message;
  }
}

// POST a JSON body; show the next comparison the server answers with, or why nothing was stored
async function post(path, body, done, failed) {
  busy = true;
  $("status").textContent = "";
  try {
    const data = await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    $("status").textContent = done;
    $("error").textContent = "";
    render(data);
  } catch (e) {
    $("error").textContent = failed + e.message;
  } finally {
    busy = false;
  }
}

function vote(choice) {
  if (current === null || busy) { return; }
  post("/api/vote", { rater, task: current, choice, elapsed_ms: Math.round(performance.now() - shownAt) },
       "Recorded.", "Not recorded (try again): ");
}

function undo() {
  if (rater === null || busy) { return; }
  post("/api/undo", { rater }, "Last vote taken back: vote again.", "Nothing undone: ");
}

document.addEventListener("DOMContentLoaded", () => {
  const saved = localStorage.getItem("aigc-rater");
  if (saved) { $("rater").value = saved; }
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("rater").value.trim();
    if (name) { begin(name); }
  });
  $("switch").addEventListener("click", (ev) => {
    ev.preventDefault();
    current = null;
    $("main").hidden = true;
    $("who").hidden = true;
    $("login").hidden = false;
    $("rater").focus();
  });
  for (const button of document.querySelectorAll("#choices button[data-choice]")) {
    button.addEventListener("click", () => vote(button.dataset.choice));
  }
  $("undo").addEventListener("click", () => undo());
  document.addEventListener("keydown", (ev) => {
    if ($("main").hidden || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    const tag = ev.target && ev.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA") { return; }
    if (ev.key === "u" || ev.key === "U" || ev.key === "Backspace") {
      ev.preventDefault();
      undo();
      return;
    }
    const choice = KEYS[ev.key];
    if (choice) {
      ev.preventDefault();
      vote(choice);
    }
  });
});

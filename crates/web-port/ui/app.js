// The image demo's page: choose a photo (checked here first against the
// limits web-port states), pick an API, POST it to /api/hello with the
// `api` header, show the answer and where its time went, keep it in this
// browser's history, refresh the stats.
"use strict";

const $ = (id) => document.getElementById(id);
let file = null;
let api = "grayscale";
// What web-port accepts (GET /api/limits); the defaults until it answers.
let limits = { maxUploadBytes: 16 * 1024 * 1024, maxImagePixels: 50000000 };
const HISTORY_KEY = "dapr-wasm-history";
const HISTORY_SIZE = 6;

// 16 MiB, 1.2 MiB, 340 KiB, 12 bytes.
function formatBytes(bytes) {
  if (bytes == null) return "–";
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 10 || Number.isInteger(value) ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

// 50 MP, 0.8 MP.
function formatPixels(pixels) {
  const mp = pixels / 1e6;
  return `${mp >= 10 || Number.isInteger(mp) ? mp.toFixed(0) : mp.toFixed(1)} MP`;
}

function showError(message, code) {
  $("error-text").textContent = message || "";
  $("error-code").textContent = code ? `(${code})` : "";
  $("error").hidden = !message;
}

// A new photo or a new mode: the last answer no longer applies.
function clearResult() {
  $("result").hidden = true;
  $("gray").removeAttribute("src");
  $("download").hidden = true;
  $("sentence").textContent = "";
  $("model-used").textContent = "";
  $("top5").replaceChildren();
  $("waterfall").replaceChildren();
  $("backend-used").hidden = true;
  $("elapsed").textContent = "";
}

async function loadLimits() {
  try {
    const response = await fetch("/api/limits");
    if (response.ok) limits = await response.json();
  } catch (_) {
    // The defaults stand; web-port checks again anyway.
  }
  $("limits").textContent =
    `JPEG, PNG, GIF, WebP or BMP, up to ${formatBytes(limits.maxUploadBytes)} and ${formatPixels(limits.maxImagePixels)}.`;
}

// Why `picked` cannot be uploaded, in plain words, or "" when it can.
async function problemWith(picked) {
  if (picked.size === 0) return "This file is empty.";
  if (picked.size > limits.maxUploadBytes) {
    return `This file is ${formatBytes(picked.size)}; the limit is ${formatBytes(limits.maxUploadBytes)}.`;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(picked);
  } catch (_) {
    return "This is not a photo this page can read: choose a JPEG, PNG, GIF, WebP or BMP file.";
  }
  const pixels = bitmap.width * bitmap.height;
  bitmap.close();
  if (pixels > limits.maxImagePixels) {
    return `This photo is ${formatPixels(pixels)}; the limit is ${formatPixels(limits.maxImagePixels)}.`;
  }
  return "";
}

async function choose(picked) {
  if (!picked) return;
  clearResult();
  file = null;
  $("submit").disabled = true;
  const problem = await problemWith(picked);
  if (problem) {
    showError(problem);
    $("preview").hidden = true;
    $("drop-hint").hidden = false;
    return;
  }
  file = picked;
  const url = URL.createObjectURL(file);
  $("preview").src = url;
  $("preview").hidden = false;
  $("drop-hint").hidden = true;
  $("original").src = url;
  $("submit").disabled = false;
  showError("");
}

$("file").addEventListener("change", (e) => choose(e.target.files[0]));
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => choose(e.dataTransfer.files[0]));

document.querySelectorAll(".example").forEach((button) => {
  button.addEventListener("click", async () => {
    const name = button.dataset.example;
    try {
      const response = await fetch(`/static/examples/${name}`);
      const blob = await response.blob();
      await choose(new File([blob], name, { type: blob.type }));
    } catch (e) {
      showError(`cannot load the example: ${e.message}`);
    }
  });
});

// The mode toggle is a radio group: one tab stop, arrow keys move.
const modes = [...document.querySelectorAll(".mode")];
function selectMode(button, focus) {
  if (api !== button.dataset.api) clearResult();
  api = button.dataset.api;
  $("model-picker").hidden = api !== "classify" || $("model").options.length === 0;
  for (const b of modes) {
    const on = b === button;
    b.classList.toggle("active", on);
    b.setAttribute("aria-checked", String(on));
    b.tabIndex = on ? 0 : -1;
  }
  if (focus) button.focus();
}
modes.forEach((button, i) => {
  button.addEventListener("click", () => selectMode(button, false));
  button.addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (!step) return;
    e.preventDefault();
    selectMode(modes[(i + step + modes.length) % modes.length], true);
  });
});

// An error answer's message and code (Dapr's {errorCode, message}).
async function errorOf(status, body) {
  try {
    const parsed = JSON.parse(await body.text());
    return { message: parsed.message || `request failed with status ${status}`, code: parsed.errorCode };
  } catch (_) {
    return { message: `request failed with status ${status}`, code: String(status) };
  }
}

// The classify app's models (GET /api/models), each with its published
// accuracy and its measured latency (the mean call, or one inference at
// start-up before any call), in the picker beside "Classify".
async function loadModels() {
  try {
    const response = await fetch("/api/models");
    if (!response.ok) return;
    const { models } = await response.json();
    const picker = $("model");
    const chosen = picker.value;
    picker.replaceChildren(...models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      const ms = m.meanCallMs ?? m.inferenceMs;
      const accuracy = m.top1Accuracy == null ? "" : ` · ${m.top1Accuracy}% top-1`;
      option.textContent = `${m.name} · ${m.inputSize}px${accuracy} · ${ms.toFixed(0)} ms`;
      option.selected = chosen ? m.name === chosen : m.default;
      return option;
    }));
    $("model-picker").hidden = api !== "classify" || models.length === 0;
  } catch (_) {
    // No picker: classify still works with the app's default model.
  }
}

function renderClassify(answer) {
  $("sentence").textContent = answer.sentence;
  $("model-used").textContent = answer.model || "";
  const list = $("top5");
  list.replaceChildren();
  for (const p of answer.top5) {
    const li = document.createElement("li");
    li.className = "bar";
    const pct = (p.probability * 100).toFixed(1);
    li.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="pct">${pct}%</span>`;
    li.querySelector(".name").textContent = p.label;
    li.querySelector(".fill").style.width = `${Math.max(p.probability * 100, 0.5)}%`;
    list.appendChild(li);
  }
}

// The answer's Server-Timing entries (each hop adds its own on the way
// back, innermost first): [{name, dur, desc}].
function serverTimings(header) {
  return (header || "").split(",").map((entry) => {
    const [name, ...params] = entry.trim().split(";");
    const timing = { name, dur: null, desc: "" };
    for (const param of params) {
      const [key, value = ""] = param.split("=");
      if (key === "dur") timing.dur = Number(value);
      if (key === "desc") timing.desc = value.replace(/^"|"$/g, "");
    }
    return timing;
  }).filter((t) => t.name && Number.isFinite(t.dur));
}

const BACKENDS = { onnxruntime: "ONNX Runtime", tract: "tract" };

// The waterfall: the browser's whole round trip, then each hop inside it,
// from the answer's Server-Timing (so it works with tracing off). Hops
// nest: each is drawn centred in the one around it (the network and the
// proxying split between the way in and the way out); inside the app,
// the wait for a call slot comes before the guest, and the inference ends
// its run.
function renderWaterfall(timings, totalMs) {
  const first = (name) => timings.find((t) => t.name === name);
  const stages = [{ name: "browser", label: "browser (whole round trip)", dur: totalMs, start: 0 }];
  const nest = (name, label, dur, tail = 0) => {
    if (dur == null) return;
    const outer = stages[stages.length - 1];
    const start = outer.start + Math.max(0, (outer.dur - tail - dur) / 2);
    stages.push({ name, label, dur, start });
  };
  const stats = first("stats");
  nest("web-port", "web-port", first("web-port")?.dur);
  // The sidecars, outermost (web-port's) first.
  const sidecars = timings.filter((t) => t.name === "dapr").reverse();
  sidecars.forEach((s, i) => nest(`sidecar-${i}`, `sidecar of ${s.desc}`, s.dur, i === 0 ? stats?.dur ?? 0 : 0));
  const app = first("app");
  nest("app", "image app", app?.dur);
  const queue = first("queue");
  const wasm = first("wasm");
  const inference = first("inference");
  if (app && queue && wasm) {
    const appStage = stages[stages.length - 1];
    const queueStart = appStage.start + Math.max(0, app.dur - queue.dur - wasm.dur);
    stages.push({ name: "queue", label: "queue (call slot)", dur: queue.dur, start: queueStart, inner: true });
    stages.push({ name: "wasm", label: "wasm (fresh instance)", dur: wasm.dur, start: queueStart + queue.dur, inner: true });
    if (inference) {
      const end = queueStart + queue.dur + wasm.dur;
      stages.push({ name: "inference", label: "inference", dur: inference.dur, start: end - inference.dur, inner: true });
    }
  }
  const scale = Math.max(totalMs, ...stages.map((s) => s.start + s.dur)) || 1;
  $("waterfall").replaceChildren(...stages.map((s) => {
    const li = document.createElement("li");
    li.className = s.inner ? "stage inner" : "stage";
    li.dataset.stage = s.name;
    li.innerHTML = `<span class="label"></span><span class="lane"><span class="span"></span></span><span class="ms"></span>`;
    li.querySelector(".label").textContent = s.label;
    const span = li.querySelector(".span");
    span.style.left = `${(s.start / scale) * 100}%`;
    span.style.width = `${(s.dur / scale) * 100}%`;
    li.querySelector(".ms").textContent = `${s.dur.toFixed(1)} ms`;
    return li;
  }));
  const [backend, model] = (inference?.desc || "").split("/");
  $("backend-used").textContent = inference ? `Answered by ${BACKENDS[backend] || backend}, ${model}` : "";
  $("backend-used").hidden = !inference;
}

// POSTs the photo with XMLHttpRequest (fetch cannot report upload
// progress); resolves with {status, body: Blob, serverTiming}.
function upload(target, headers, body) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", target);
    xhr.responseType = "blob";
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    const progress = $("progress");
    progress.value = 0;
    progress.hidden = false;
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = e.loaded / e.total;
    });
    xhr.addEventListener("load", () => resolve({
      status: xhr.status,
      body: xhr.response,
      serverTiming: xhr.getResponseHeader("server-timing"),
    }));
    xhr.addEventListener("error", () => reject(new Error("the connection failed")));
    xhr.addEventListener("loadend", () => { progress.hidden = true; });
    xhr.send(body);
  });
}

// A small thumbnail of `image` for the history, as a data URL.
function thumbnail(image) {
  const canvas = document.createElement("canvas");
  const scale = 72 / Math.max(image.naturalWidth, image.naturalHeight, 1);
  canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
  canvas.getContext("2d").drawImage(image, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL("image/jpeg", 0.7);
}

function loadHistory() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY)) || [];
  } catch (_) {
    return [];
  }
}

function remember(entry) {
  const history = [entry, ...loadHistory()].slice(0, HISTORY_SIZE);
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(history));
  } catch (_) {
    // A full or disabled storage: the history just is not kept.
  }
  renderHistory();
}

function renderHistory() {
  const history = loadHistory();
  $("recent").hidden = history.length === 0;
  $("recent-list").replaceChildren(...history.map((h) => {
    const li = document.createElement("li");
    li.innerHTML = `<img alt=""><span><strong></strong><small></small></span>`;
    li.querySelector("img").src = h.thumbnail;
    li.querySelector("strong").textContent = h.summary;
    li.querySelector("small").textContent = `${h.api} · ${h.ms.toFixed(0)} ms · ${new Date(h.time).toLocaleTimeString()}`;
    return li;
  }));
}

// Shows a gray image no larger than twice its own size.
async function showGray(blob) {
  const gray = $("gray");
  const url = URL.createObjectURL(blob);
  gray.src = url;
  await gray.decode().catch(() => {});
  gray.style.maxWidth = `${gray.naturalWidth * 2}px`;
  $("original").style.maxWidth = gray.style.maxWidth;
  const download = $("download");
  download.href = url;
  download.download = `${(file?.name || "photo").replace(/\.[^.]*$/, "")}-gray.png`;
  download.hidden = false;
}

$("submit").addEventListener("click", async () => {
  if (!file) return;
  const button = $("submit");
  button.disabled = true;
  button.classList.add("loading");
  showError("");
  const started = performance.now();
  try {
    const model = $("model").value;
    const target = api === "classify" && model ? `/api/hello?model=${encodeURIComponent(model)}` : "/api/hello";
    const answer = await upload(target, { api, "content-type": file.type || "application/octet-stream" }, file);
    if (answer.status < 200 || answer.status >= 300) {
      const { message, code } = await errorOf(answer.status, answer.body);
      showError(message, code);
      return;
    }
    const timings = serverTimings(answer.serverTiming);
    clearResult();
    $("result").hidden = false;
    const isGray = api === "grayscale";
    $("gray-view").hidden = !isGray;
    $("classify-view").hidden = isGray;
    $("result-title").textContent = isGray ? "Grayscale" : "Classification";
    let summary;
    if (isGray) {
      await showGray(answer.body);
      summary = "Grayscale";
    } else {
      const parsed = JSON.parse(await answer.body.text());
      renderClassify(parsed);
      summary = parsed.top5?.[0]?.label || parsed.sentence;
    }
    // The whole round trip: upload, answer, download and drawing.
    const ms = performance.now() - started;
    $("elapsed").textContent = `${ms.toFixed(0)} ms`;
    renderWaterfall(timings, ms);
    remember({ time: Date.now(), api, summary, ms, thumbnail: thumbnail(isGray ? $("gray") : $("preview")) });
    if (window.matchMedia("(max-width: 640px)").matches) {
      const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      $("result").scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
    }
  } catch (e) {
    showError(`cannot reach web-port: ${e.message}`);
  } finally {
    button.disabled = !file;
    button.classList.remove("loading");
    button.focus();
    refreshStats();
    if (api === "classify") loadModels();
  }
});

// The last uploads: from the events service (fed by pub/sub), or, while it
// is unavailable, from the stats record, saying so.
async function history(fallback) {
  let reason;
  try {
    const response = await fetch("/api/events?limit=10");
    if (response.ok) {
      $("history-note").hidden = true;
      $("more-events").hidden = false;
      return (await response.json()).events;
    }
    reason = (await errorOf(response.status, response)).message;
  } catch (e) {
    reason = e.message;
  }
  $("history-note").textContent = `History from the stats record, as the events service is not available: ${reason}`;
  $("history-note").hidden = false;
  $("more-events").hidden = true;
  return fallback;
}

async function refreshStats() {
  try {
    const response = await fetch("/api/invokecount");
    if (!response.ok) {
      $("stats-error").textContent = (await errorOf(response.status, response)).message;
      $("stats-error").hidden = false;
      return;
    }
    const stats = await response.json();
    $("stats-error").hidden = true;
    const failed = stats.failed ?? 0;
    const events = await history(stats.events);
    // The count and the table change together, after the history is in,
    // so the panel never shows a new count over old rows.
    $("count").textContent = stats.count;
    $("count-detail").textContent = `${stats.count} answered, ${failed} failed`;
    $("events-caption").textContent = `The last ${events.length} uploads`;
    const rows = events.map((e) => {
      const tr = document.createElement("tr");
      if (e.status >= 400) tr.className = "failed";
      const time = new Date(e.time).toLocaleTimeString();
      const cells = [time, e.api, formatBytes(e.inputBytes), formatBytes(e.outputBytes), `${e.milliseconds.toFixed(1)} ms`,
        e.status >= 400 ? `${e.status} failed` : String(e.status)];
      for (const v of cells) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      return tr;
    });
    $("events").replaceChildren(...rows);
  } catch (e) {
    $("stats-error").textContent = `cannot load stats: ${e.message}`;
    $("stats-error").hidden = false;
  }
}

// The System panel: each process's health and request rate (web-port
// reads their metrics ports), every 2 s while the page is visible.
async function refreshSystem() {
  if (document.hidden) return;
  try {
    const response = await fetch("/api/system");
    if (!response.ok) return;
    const { processes } = await response.json();
    $("system").hidden = processes.length === 0;
    $("system-rows").replaceChildren(...processes.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.process = p.name;
      const rate = p.requestsPerSecond == null ? "–" : `${p.requestsPerSecond.toFixed(1)} req/s`;
      tr.innerHTML = `<td></td><td><span class="health"></span></td><td class="rate"></td>`;
      tr.cells[0].textContent = p.name;
      const health = tr.querySelector(".health");
      health.classList.add(p.healthy ? "up" : "down");
      health.textContent = p.healthy ? "up" : "down";
      if (p.error) health.title = p.error;
      tr.cells[2].textContent = rate;
      return tr;
    }));
  } catch (_) {
    // web-port itself is down: the upload shows that.
  }
}

loadLimits();
refreshSystem();
setInterval(refreshSystem, 2000);
refreshStats();
loadModels();
renderHistory();

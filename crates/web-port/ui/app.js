// The image demo's page: choose a photo, pick an API, POST it to
// /api/hello with the `api` header, show the answer, refresh the stats.
"use strict";

const $ = (id) => document.getElementById(id);
let file = null;
let api = "grayscale";

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function choose(picked) {
  if (!picked) return;
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

document.querySelectorAll(".mode").forEach((button) => {
  button.addEventListener("click", () => {
    api = button.dataset.api;
    $("model-picker").hidden = api !== "classify" || $("model").options.length === 0;
    document.querySelectorAll(".mode").forEach((b) => {
      b.classList.toggle("active", b === button);
      b.setAttribute("aria-checked", String(b === button));
    });
  });
});

async function errorMessage(response) {
  try {
    const body = await response.json();
    return `${body.message || "request failed"} (${body.errorCode || response.status})`;
  } catch (_) {
    return `request failed with status ${response.status}`;
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
  const webPort = first("web-port");
  const stats = first("stats");
  nest("web-port", "web-port", webPort?.dur);
  // The sidecars, outermost (web-port's) first.
  const sidecars = timings.filter((t) => t.name === "dapr").reverse();
  sidecars.forEach((s, i) => nest(`sidecar-${i}`, `sidecar of ${s.desc}`, s.dur, i === 0 ? stats?.dur ?? 0 : 0));
  const app = first("app");
  nest("app", "image app", app?.dur);
  const queue = first("queue");
  const wasm = first("wasm");
  if (app && queue && wasm) {
    const appStage = stages[stages.length - 1];
    const queueStart = appStage.start + Math.max(0, app.dur - queue.dur - wasm.dur);
    stages.push({ name: "queue", label: "queue (call slot)", dur: queue.dur, start: queueStart, inner: true });
    stages.push({ name: "wasm", label: "wasm (fresh instance)", dur: wasm.dur, start: queueStart + queue.dur, inner: true });
    const inference = first("inference");
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
  const inference = first("inference");
  const [backend, model] = (inference?.desc || "").split("/");
  $("backend-used").textContent = inference ? `Answered by ${BACKENDS[backend] || backend}, ${model}` : "";
  $("backend-used").hidden = !inference;
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
    const response = await fetch(target, {
      method: "POST",
      headers: { api, "content-type": file.type || "application/octet-stream" },
      body: file,
    });
    if (!response.ok) {
      showError(await errorMessage(response));
      return;
    }
    const timings = serverTimings(response.headers.get("server-timing"));
    $("result").hidden = false;
    const isGray = api === "grayscale";
    $("gray-view").hidden = !isGray;
    $("classify-view").hidden = isGray;
    $("result-title").textContent = isGray ? "Grayscale" : "Classification";
    if (isGray) {
      const gray = $("gray");
      gray.src = URL.createObjectURL(await response.blob());
      await gray.decode().catch(() => {});
    } else {
      renderClassify(await response.json());
    }
    // The whole round trip: upload, answer, download and drawing.
    const ms = performance.now() - started;
    $("elapsed").textContent = `${ms.toFixed(0)} ms`;
    renderWaterfall(timings, ms);
  } catch (e) {
    showError(`cannot reach web-port: ${e.message}`);
  } finally {
    button.disabled = false;
    button.classList.remove("loading");
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
      return (await response.json()).events;
    }
    reason = await errorMessage(response);
  } catch (e) {
    reason = e.message;
  }
  $("history-note").textContent = `History from the stats record: ${reason}`;
  $("history-note").hidden = false;
  return fallback;
}

async function refreshStats() {
  try {
    const response = await fetch("/api/invokecount");
    if (!response.ok) {
      $("stats-error").textContent = await errorMessage(response);
      $("stats-error").hidden = false;
      return;
    }
    const stats = await response.json();
    $("stats-error").hidden = true;
    $("count").textContent = stats.count;
    $("count").title = `${stats.count} answered, ${stats.failed ?? 0} failed`;
    const events = await history(stats.events);
    const rows = events.map((e) => {
      const tr = document.createElement("tr");
      const time = new Date(e.time).toLocaleTimeString();
      for (const v of [time, e.api, e.inputBytes, e.outputBytes, e.milliseconds.toFixed(1), e.status]) {
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

refreshStats();
loadModels();

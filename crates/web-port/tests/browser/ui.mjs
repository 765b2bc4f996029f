// Drives the image demo's UI in a real browser: Debian's Chromium through
// playwright-core (never a downloaded browser).
//
// Usage: node ui.mjs URL PHOTO SCREENSHOT_DIR
// Uploads PHOTO and runs Grayscale: the gray image, its download, the
// waterfall with every hop, the upload's progress, focus back on Run.
// Switches to Classify with the arrow keys (a real radio group), which
// clears the old result; checks the sentence, the five bars, the
// waterfall's inference and the backend named; picks each other model;
// checks the stats (sizes with units, failures counted), this browser's
// history with thumbnails, the System panel (each process up, its rate), an example photo, the checks made before any
// upload (empty, not an image, too large) with plain words, a phone-sized
// screen that scrolls to the result, no request that fails or leaves the
// page's origin, and an axe-core scan with no serious or critical
// violation. Saves screenshots (desktop, waterfall, phone).
// Exits non-zero with a reason on the first failed check.
import { chromium } from "playwright-core";
import { createRequire } from "node:module";
import path from "node:path";

const [url, photo, shots] = process.argv.slice(2);
if (!url || !photo || !shots) {
  console.error("usage: node ui.mjs URL PHOTO SCREENSHOT_DIR");
  process.exit(2);
}
const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

function check(ok, message) {
  if (!ok) throw new Error(message);
}

// The waterfall shows exactly `stages`, in order, each with a time and a
// bar inside its lane; the sidecars are labelled `sidecars`.
async function checkWaterfall(page, stages, sidecars) {
  await page.waitForFunction((n) => document.querySelectorAll("[data-testid=waterfall] li").length === n,
    stages.length, { timeout: 10000 });
  const shown = await page.locator("[data-testid=waterfall] li").evaluateAll((items) => items.map((li) => ({
    stage: li.dataset.stage,
    label: li.querySelector(".label").textContent,
    ms: li.querySelector(".ms").textContent,
    width: li.querySelector(".span").getBoundingClientRect().width,
    lane: li.querySelector(".lane").getBoundingClientRect().width,
  })));
  console.log("waterfall:", shown.map((s) => `${s.label} ${s.ms}`).join(" | "));
  const names = shown.map((s) => s.stage).join(",");
  check(names === stages.join(","), `the waterfall shows ${names}, not ${stages.join(",")}`);
  const labels = shown.filter((s) => s.stage.startsWith("sidecar")).map((s) => s.label).join(",");
  check(labels === sidecars.join(","), `the sidecars are labelled ${labels}`);
  for (const s of shown) {
    check(/^\d+\.\d ms$/.test(s.ms), `${s.stage} shows ${s.ms}`);
    check(s.width <= s.lane + 0.5, `${s.stage}'s bar overflows its lane`);
  }
  check(shown[0].width >= shown[0].lane * 0.99, "the browser's bar does not fill its lane");
}

// Chooses `file` (a path or {name, mimeType, buffer}) and waits until the
// page has checked it: Run enabled, or an error shown.
async function choose(page, file) {
  await page.getByTestId("file").setInputFiles(file);
  await page.waitForFunction(() => !document.querySelector("[data-testid=submit]").disabled
    || !document.querySelector("[data-testid=error]").hidden, null, { timeout: 10000 });
}

// Chooses `file`, which the page must refuse before uploading with `words`.
async function refused(page, file, words) {
  const before = await page.evaluate(() => performance.getEntriesByType("resource").length);
  await choose(page, file);
  const error = await page.getByTestId("error-text").textContent();
  console.log(`refused ${file.name}:`, error);
  check(error === words, `${file.name}: the page says "${error}", not "${words}"`);
  check(await page.getByTestId("submit").isDisabled(), `${file.name}: Run is still enabled`);
  const uploads = await page.evaluate((n) => performance.getEntriesByType("resource").slice(n)
    .filter((r) => r.name.includes("/api/hello")).length, before);
  check(uploads === 0, `${file.name} was uploaded`);
}

async function run(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const outside = [];
  const failed = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(url) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) outside.push(r.url());
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && !r.url().includes("/api/events")) failed.push(`${r.status()} ${r.url()}`);
  });
  await page.goto(url);
  const limits = await page.getByTestId("limits").textContent();
  check(limits.includes("up to 16 MiB and 50 MP"), `the limits are not stated up front: ${limits}`);
  check(await page.getByTestId("file").getAttribute("aria-label") === "Choose a photo", "the file input has no name");

  // Grayscale.
  await choose(page, photo);
  await page.getByTestId("submit").click();
  const gray = page.getByTestId("gray");
  await gray.waitFor({ state: "visible", timeout: 30000 });
  await page.waitForFunction(() => {
    const img = document.querySelector("[data-testid=gray]");
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 30000 });
  console.log("grayscale shown:", await gray.evaluate((img) => `${img.naturalWidth}x${img.naturalHeight}`));
  const hops = ["browser", "web-port", "sidecar-0", "sidecar-1", "app", "queue", "wasm"];
  await checkWaterfall(page, hops, ["sidecar of web-port", "sidecar of image-api-grayscale"]);
  const download = page.getByTestId("download");
  check(await download.isVisible(), "no download button for the gray image");
  check((await download.getAttribute("download")).endsWith("-gray.png"), "the download is not named *-gray.png");
  check((await download.getAttribute("href")).startsWith("blob:"), "the download is not the gray image");
  // A small photo is not blown up past twice its size.
  const grown = await gray.evaluate((img) => img.getBoundingClientRect().width / img.naturalWidth);
  check(grown <= 2.01, `the gray image is drawn at ${grown.toFixed(2)}x`);
  check(await page.evaluate(() => document.querySelector("[data-testid=progress]").value) === 1,
    "the upload's progress did not reach the end");
  check(await page.evaluate(() => document.activeElement?.dataset.testid) === "submit", "focus did not return to Run");
  await page.screenshot({ path: path.join(shots, "ui-grayscale.png"), fullPage: true });

  // The mode toggle is a radio group: arrow keys move; the old result goes.
  await page.getByTestId("mode-grayscale").focus();
  await page.keyboard.press("ArrowRight");
  const classifyMode = page.getByTestId("mode-classify");
  check(await classifyMode.getAttribute("aria-checked") === "true", "ArrowRight did not pick Classify");
  check(await page.evaluate(() => document.activeElement?.dataset.testid) === "mode-classify", "focus did not follow the arrow");
  check(await classifyMode.getAttribute("tabindex") === "0" && await page.getByTestId("mode-grayscale").getAttribute("tabindex") === "-1",
    "the radio group has more than one tab stop");
  check(await page.getByTestId("result").isHidden(), "switching mode kept the old result");

  // Classify.
  await page.getByTestId("submit").click();
  const sentence = page.getByTestId("sentence");
  await sentence.waitFor({ state: "visible", timeout: 30000 });
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=top5] li").length === 5, null, { timeout: 30000 });
  const text = await sentence.textContent();
  const labels = await page.locator("[data-testid=top5] li .name").allTextContents();
  console.log("classify shown:", text, "|", labels.join(", "));
  check(/cat/.test(text), `the sentence names no cat: ${text}`);
  const barWidth = await page.locator("[data-testid=top5] li .fill").first().evaluate((el) => el.getBoundingClientRect().width);
  check(barWidth >= 20, `the top bar is ${barWidth}px wide`);
  check(!(await gray.isVisible()), "the grayscale view is still shown in classify mode");
  await checkWaterfall(page, [...hops, "inference"], ["sidecar of web-port", "sidecar of image-api-classify"]);
  const backend = await page.getByTestId("backend-used").textContent();
  check(backend === "Answered by ONNX Runtime, efficientnet-lite0", `the backend shown: ${backend}`);
  await page.getByTestId("waterfall").screenshot({ path: path.join(shots, "ui-waterfall.png") });

  // The model picker: every model, with its accuracy and latency; the
  // answer says which model produced it.
  const picker = page.getByTestId("model");
  await picker.waitFor({ state: "visible", timeout: 10000 });
  const options = await picker.locator("option").allTextContents();
  console.log("models offered:", options.join(" | "));
  const names = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"];
  for (const name of names) {
    const option = options.find((o) => o.startsWith(name));
    check(option && /% top-1 · \d+ ms$/.test(option), `the picker shows ${name} as ${option}`);
  }
  const used = page.getByTestId("model-used");
  check(await used.textContent() === "efficientnet-lite0", `the default answer came from ${await used.textContent()}`);
  for (const name of names.slice(1)) {
    await picker.selectOption(name);
    await page.getByTestId("submit").click();
    await page.waitForFunction((n) => document.querySelector("[data-testid=model-used]").textContent === n, name, { timeout: 30000 });
    const said = await sentence.textContent();
    console.log(`classify with ${name}:`, said);
    check(/cat/.test(said), `${name}'s sentence names no cat: ${said}`);
  }

  // The stats: sizes with units, failures counted, how many rows shown.
  await page.waitForFunction(() => Number(document.querySelector("[data-testid=count]").textContent) >= 4, null, { timeout: 10000 });
  const detail = await page.getByTestId("count-detail").textContent();
  check(/^\d+ answered, \d+ failed$/.test(detail), `the stats say ${detail}`);
  const firstRow = await page.locator("[data-testid=events] tr").first().locator("td").allTextContents();
  console.log("newest stats row:", firstRow.join(" | "));
  check(/ (KiB|MiB|bytes)$/.test(firstRow[2]) && / (KiB|MiB|bytes)$/.test(firstRow[3]), `sizes without units: ${firstRow}`);
  const rows = await page.locator("[data-testid=events] tr").count();
  check(rows >= 4, `the stats panel shows ${rows} events`);
  check(await page.getByTestId("events-caption").textContent() === `The last ${rows} uploads`, "the table does not say how many it shows");

  // This browser's history: one entry per result, newest first, each with
  // a thumbnail.
  const recent = await page.locator("[data-testid=recent] li").evaluateAll((items) => items.map((li) => ({
    text: li.querySelector("strong").textContent,
    thumbnail: li.querySelector("img").src,
  })));
  console.log("history:", recent.map((r) => r.text).join(" | "));
  check(recent.length === 4, `the history has ${recent.length} entries, not 4`);
  check(recent[3].text === "Grayscale" && recent.every((r) => r.thumbnail.startsWith("data:image/jpeg")),
    "the history is not newest first with thumbnails");
  await page.screenshot({ path: path.join(shots, "ui-classify.png"), fullPage: true });

  // An example photo, in one click; a new photo clears the old result.
  // (Chosen once the preview shows it and Run is enabled again; the old
  // result must be gone by then.)
  const before = await page.evaluate(() => document.getElementById("preview").src);
  await page.locator(".example[data-example='coffee.jpg']").click();
  await page.waitForFunction((old) => document.getElementById("preview").src !== old
    && !document.querySelector("[data-testid=submit]").disabled, before, { timeout: 10000 });
  check(await page.getByTestId("result").isHidden(), "a new photo kept the old result");
  await page.getByTestId("submit").click();
  await page.waitForFunction(() => /espresso|coffee|cup/.test(document.querySelector("[data-testid=sentence]").textContent),
    null, { timeout: 30000 });
  console.log("example photo:", await sentence.textContent());

  // Checked before any upload, in plain words.
  await refused(page, { name: "empty.jpg", mimeType: "image/jpeg", buffer: Buffer.alloc(0) }, "This file is empty.");
  await refused(page, { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not an image") },
    "This is not a photo this page can read: choose a JPEG, PNG, GIF, WebP or BMP file.");
  await refused(page, { name: "huge.jpg", mimeType: "image/jpeg", buffer: Buffer.alloc(17 * 1024 * 1024, 1) },
    "This file is 17 MiB; the limit is 16 MiB.");

  // A phone-sized screen: no horizontal scrolling, and the result scrolls
  // into view.
  await page.setViewportSize({ width: 390, height: 844 });
  await choose(page, photo);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.getByTestId("submit").click();
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=top5] li").length === 5, null, { timeout: 30000 });
  await page.waitForFunction(() => {
    const top = document.querySelector("[data-testid=result]").getBoundingClientRect().top;
    return top >= -1 && top < window.innerHeight / 2;
  }, null, { timeout: 5000 }).catch(() => { throw new Error("the result was not scrolled into view on a phone"); });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the page scrolls sideways by ${overflow}px on a phone`);
  await page.screenshot({ path: path.join(shots, "ui-phone.png"), fullPage: true });

  // The System panel: every app and sidecar up, web-port's request rate.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("[data-testid=system-rows] tr")];
    return rows.length === 6 && rows.every((r) => r.querySelector(".health").textContent === "up")
      && /^\d+\.\d req\/s$/.test(document.querySelector("tr[data-process=web-port] .rate")?.textContent || "");
  }, null, { timeout: 10000 }).catch(() => { throw new Error("the System panel does not show six processes up with a rate"); });
  const system = await page.locator("[data-testid=system-rows] tr").evaluateAll((rows) => rows.map((r) => r.textContent));
  console.log("system:", system.join(" | "));

  // Accessibility: live regions, and axe-core finds nothing serious.
  check(await page.getByTestId("result").getAttribute("aria-live") === "polite", "the result is not a live region");
  check(await page.getByTestId("count").getAttribute("aria-live") === "polite", "the stats are not a live region");
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.addScriptTag({ path: axePath });
  const violations = await page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ["violations"] });
    return results.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")) }));
  });
  for (const v of violations) console.log(`axe: ${v.impact} ${v.id}: ${v.nodes.join(", ")}`);
  const serious = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(serious.length === 0, `axe-core found ${serious.map((v) => v.id).join(", ")}`);
  console.log(`axe-core: ${violations.length} violations, none serious or critical`);

  check(outside.length === 0, `the page loaded from outside: ${outside.join(", ")}`);
  check(failed.length === 0, `requests failed (a console error): ${failed.join(", ")}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  await run(browser);
  console.log("ok");
} finally {
  await browser.close();
}

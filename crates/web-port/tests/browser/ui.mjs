// Drives the image demo's UI in a real browser: Debian's Chromium through
// playwright-core (never a downloaded browser).
//
// Usage: node ui.mjs URL PHOTO SCREENSHOT_DIR
// Uploads PHOTO, runs Grayscale and checks the gray image shows and the
// waterfall has every hop, switches to Classify and checks the sentence,
// the five bars, the waterfall's inference and the backend named, picks each other
// model in the picker and checks the answer names it, checks the stats
// panel counted them all, and saves screenshots (desktop and phone size).
// Exits non-zero with a reason on the first failed check.
import { chromium } from "playwright-core";
import path from "node:path";

const [url, photo, shots] = process.argv.slice(2);
if (!url || !photo || !shots) {
  console.error("usage: node ui.mjs URL PHOTO SCREENSHOT_DIR");
  process.exit(2);
}

// The waterfall shows exactly `stages`, in order, each with a time and a
// bar inside the browser's; the sidecars are labelled `sidecars`.
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
  if (names !== stages.join(",")) throw new Error(`the waterfall shows ${names}, not ${stages.join(",")}`);
  const labels = shown.filter((s) => s.stage.startsWith("sidecar")).map((s) => s.label).join(",");
  if (labels !== sidecars.join(",")) throw new Error(`the sidecars are labelled ${labels}`);
  for (const s of shown) {
    if (!/^\d+\.\d ms$/.test(s.ms)) throw new Error(`${s.stage} shows ${s.ms}`);
    if (s.width > s.lane + 0.5) throw new Error(`${s.stage}'s bar overflows its lane`);
  }
  if (shown[0].width < shown[0].lane * 0.99) throw new Error("the browser's bar does not fill its lane");
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const outside = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(url) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) outside.push(r.url());
  });
  await page.goto(url);
  await page.getByTestId("file").setInputFiles(photo);
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
  await page.screenshot({ path: path.join(shots, "ui-grayscale.png"), fullPage: true });

  await page.getByTestId("mode-classify").click();
  await page.getByTestId("submit").click();
  const sentence = page.getByTestId("sentence");
  await sentence.waitFor({ state: "visible", timeout: 30000 });
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=top5] li").length === 5, null, { timeout: 30000 });
  const text = await sentence.textContent();
  const labels = await page.locator("[data-testid=top5] li .name").allTextContents();
  console.log("classify shown:", text, "|", labels.join(", "));
  if (!/cat/.test(text)) throw new Error(`the sentence names no cat: ${text}`);
  const barWidth = await page.locator("[data-testid=top5] li .fill").first().evaluate((el) => el.getBoundingClientRect().width);
  if (barWidth < 20) throw new Error(`the top bar is ${barWidth}px wide`);
  if (await page.getByTestId("gray").isVisible()) throw new Error("the grayscale view is still shown in classify mode");
  await checkWaterfall(page, [...hops, "inference"], ["sidecar of web-port", "sidecar of image-api-classify"]);
  const backend = await page.getByTestId("backend-used").textContent();
  if (backend !== "Answered by ONNX Runtime, efficientnet-lite0") throw new Error(`the backend shown: ${backend}`);
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
    if (!option || !/% top-1 · \d+ ms$/.test(option)) throw new Error(`the picker shows ${name} as ${option}`);
  }
  const used = page.getByTestId("model-used");
  if ((await used.textContent()) !== "efficientnet-lite0") throw new Error(`the default answer came from ${await used.textContent()}`);
  for (const name of names.slice(1)) {
    await picker.selectOption(name);
    await page.getByTestId("submit").click();
    await page.waitForFunction((n) => document.querySelector("[data-testid=model-used]").textContent === n, name, { timeout: 30000 });
    const said = await sentence.textContent();
    console.log(`classify with ${name}:`, said);
    if (!/cat/.test(said)) throw new Error(`${name}'s sentence names no cat: ${said}`);
  }

  await page.waitForFunction(() => Number(document.querySelector("[data-testid=count]").textContent) >= 4, null, { timeout: 10000 });
  const rows = await page.locator("[data-testid=events] tr").count();
  if (rows < 2) throw new Error(`the stats panel shows ${rows} events`);
  await page.screenshot({ path: path.join(shots, "ui-classify.png"), fullPage: true });

  // A phone-sized screen: no horizontal scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`the page scrolls sideways by ${overflow}px on a phone`);
  await page.screenshot({ path: path.join(shots, "ui-phone.png"), fullPage: true });

  // Errors are shown inline.
  await page.setViewportSize({ width: 1100, height: 900 });
  await page.getByTestId("file").setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not an image") });
  await page.getByTestId("submit").click();
  const error = page.getByTestId("error");
  await error.waitFor({ state: "visible", timeout: 30000 });
  console.log("error shown:", await error.textContent());

  if (outside.length) throw new Error(`the page loaded from outside: ${outside.join(", ")}`);
  console.log("ok");
} finally {
  await browser.close();
}

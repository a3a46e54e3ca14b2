// Drives Debian's chromium through the settings page and prints one JSON
// object on stdout for tests/it/page.rs to check. Asserts nothing itself:
// the Rust test owns the expectations.
//
// usage: node page.mjs <page url> <address> <artifact dir>

import { mkdtempSync, rmSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { PNG } from "pngjs";
import jsQR from "jsqr";

const [url, address, artifacts] = process.argv.slice(2);
if (!url || !address || !artifacts) {
  console.error("usage: node page.mjs <page url> <address> <artifact dir>");
  process.exit(2);
}
const host = new URL(url).hostname;
const STEP_TIMEOUT_MS = 15_000;
// A hung browser must not hang the test run.
setTimeout(() => {
  console.error("page.mjs: gave up after 90 s");
  process.exit(3);
}, 90_000).unref();

mkdirSync(artifacts, { recursive: true });
const profileDir = mkdtempSync(join(tmpdir(), "mailconfd-chromium-"));
const out = { console: [], timingsMs: {} };
const started = Date.now();
const mark = (name) => (out.timingsMs[name] = Date.now() - started);
const context = await chromium.launchPersistentContext(profileDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  acceptDownloads: true,
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  locale: "en-US",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // http://autoconfig.example.test:<port>/ must stay plain http on loopback.
    "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
    `--host-resolver-rules=MAP ${host} 127.0.0.1`,
  ],
});

mark("launched");
try {
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = context.pages()[0] ?? (await context.newPage());
  // CSP violations and any script error show up here; the test wants none.
  let expectedStatus = null;
  page.on("console", (m) => {
    // Chromium logs every 4xx document; the one we asked for is not news.
    if (expectedStatus && m.text().includes(`status of ${expectedStatus}`)) return;
    out.console.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => out.console.push(`pageerror: ${e.message}`));

  const first = await page.goto(url);
  out.formStatus = first.status();
  mark("form");
  out.lang = await page.getAttribute("html", "lang");
  out.title = await page.title();
  await page.screenshot({ path: join(artifacts, "page-form.png"), fullPage: true });

  // Keyboard only: the first Tab stop must be the address field and show a focus ring.
  await page.keyboard.press("Tab");
  out.firstFocus = await page.evaluate(() => document.activeElement?.id ?? null);
  out.focusOutline = await page.evaluate(
    () => getComputedStyle(document.activeElement).outlineWidth,
  );

  // By its label, as a screen reader user would find it.
  await page.getByLabel("Your e-mail address").fill(address);
  const [settings] = await Promise.all([
    page.waitForNavigation(),
    page.keyboard.press("Enter"),
  ]);
  out.settingsStatus = settings.status();
  mark("settings");
  out.settingsUrl = page.url();
  out.headers = settings.headers();
  out.h1 = await page.textContent("h1");
  out.tables = await page.$$eval("table", (tables) =>
    tables.map((t) => ({
      caption: t.caption?.textContent ?? "",
      rows: [...t.rows].map((r) => [r.cells[0].textContent, r.cells[1].textContent]),
    })),
  );
  out.steps = await page.$$eval("h3", (hs) => hs.map((h) => h.textContent));

  const qrPng = await page.locator("figure svg").screenshot({
    path: join(artifacts, "page-qr.png"),
  });
  const png = PNG.sync.read(qrPng);
  out.qr = jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data ?? null;

  await page.screenshot({ path: join(artifacts, "page.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  mark("screenshots");
  await page.screenshot({ path: join(artifacts, "page-desktop.png"), fullPage: true });

  const link = page.getByRole("link", { name: "Download the profile" });
  out.downloadHref = await link.getAttribute("href");
  // A download never reaches Playwright's "response" event, so pause the
  // browser's own request at the response stage (DevTools Fetch domain) and
  // read status and headers there.
  const cdp = await context.newCDPSession(page);
  const received = new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("no /mobileconfig response seen")), STEP_TIMEOUT_MS).unref();
    cdp.on("Fetch.requestPaused", (e) => {
      resolve(e);
      cdp.send("Fetch.continueRequest", { requestId: e.requestId }).catch(() => {});
    });
  });
  await cdp.send("Fetch.enable", {
    patterns: [{ urlPattern: "*/mobileconfig*", requestStage: "Response" }],
  });
  const [download, paused] = await Promise.all([
    page.waitForEvent("download"),
    received,
    link.click(),
  ]);
  out.downloadStatus = paused.responseStatusCode;
  mark("download");
  out.downloadContentType = paused.responseHeaders.find(
    (h) => h.name.toLowerCase() === "content-type",
  )?.value;
  out.downloadFilename = download.suggestedFilename();
  const saved = join(profileDir, "download");
  await download.saveAs(saved);
  out.downloadStart = readFileSync(saved).subarray(0, 64).toString("latin1");

  await page.emulateMedia({ colorScheme: "dark" });
  await page.screenshot({ path: join(artifacts, "page-desktop-dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });
  await page.setViewportSize({ width: 390, height: 844 });
  expectedStatus = 400;
  const invalid = await page.goto(`${url}?emailaddress=alice.example.test`);
  out.invalidStatus = invalid.status();
  mark("invalid");
  out.invalidError = await page.textContent("#address-error");
  out.invalidFocus = await page.evaluate(() => document.activeElement?.id ?? null);
  await page.screenshot({ path: join(artifacts, "page-invalid.png"), fullPage: true });
} catch (e) {
  out.error = String(e?.stack ?? e);
} finally {
  await context.close();
  rmSync(profileDir, { recursive: true, force: true });
  mark("closed");
}
console.log(JSON.stringify(out));

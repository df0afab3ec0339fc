// Drives the dashboard at $EDGEHOOK_URL/dashboard in headless Chromium (Debian's, through
// playwright-core) the way an operator would. Run by the integration suite (dashboard.rs),
// which prepares the event and the dead letter, and answers on stdin when it has checked what
// happened between the steps. Every step prints one line: "STEP <name>".
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("EDGEHOOK_URL");
const token = env("ADMIN_TOKEN");
const eventSource = env("EVENT_SOURCE");
const eventId = env("EVENT_ID");
const deadId = env("DEAD_ID");
const pauseSource = env("PAUSE_SOURCE");
const pausePattern = env("PAUSE_PATTERN");

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function waitForGo() {
  const { value, done } = await lines.next();
  if (done || value.trim() !== "GO") throw new Error(`expected GO on stdin, got ${value}`);
}
const step = (name) => console.log(`STEP ${name}`);

// $CHROMIUM, else `chromium` on the PATH (Linux), else the Chromium or Chrome app (macOS); as
// scripts/setup looks for one.
function browserPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  const apps = ["/Applications/Chromium.app/Contents/MacOS/Chromium",
                "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"];
  try {
    return execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
  } catch (e) {
    const app = apps.find((path) => existsSync(path));
    if (app) return app;
    throw new Error("no Chromium: install it, or set CHROMIUM=/path/to/it");
  }
}

const browser = await chromium.launch({
  executablePath: browserPath(),
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const failures = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    // Nothing may be loaded from anywhere but the worker itself.
    if (!r.url().startsWith(base)) failures.push(`external request: ${r.url()}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(base)) failures.push(`external request: ${r.url()}`);
  });
  page.setDefaultTimeout(30_000);

  await page.goto(`${base}/dashboard`);
  // A wrong token is refused and the login form stays. One of the dashboard's requests made
  // with it is held back, so its refusal arrives after the right token has logged in: that
  // late answer must not log the new session out (it once did, when CI was slow).
  const wrong = "not-the-token";
  let releaseLate;
  const lateReleased = new Promise((resolve) => { releaseLate = resolve; });
  await page.route(`${base}/admin/metrics*`, async (route) => {
    if (route.request().headers()["authorization"] === `Bearer ${wrong}`) await lateReleased;
    await route.continue();
  });
  await page.getByTestId("token").fill(wrong);
  await page.getByTestId("login-button").click();
  await page.getByTestId("message").filter({ hasText: "not accepted" }).waitFor();
  await page.getByTestId("login").waitFor({ state: "visible" });
  // The right one logs in; the token is in session storage only.
  await page.getByTestId("token").fill(token);
  await page.getByTestId("login-button").click();
  await page.getByTestId("health-status").filter({ hasText: /ok|degraded/ }).waitFor();
  const lateRefusal = page.waitForResponse((r) => r.url().includes("/admin/metrics")
    && r.request().headers()["authorization"] === `Bearer ${wrong}`);
  releaseLate();
  if ((await lateRefusal).status() !== 401) throw new Error("the held-back request was not refused");
  await page.waitForTimeout(200); // let the page handle the late refusal
  await page.getByTestId("health-status").filter({ hasText: /ok|degraded/ }).waitFor({ timeout: 1_000 });
  await page.unroute(`${base}/admin/metrics*`);
  const stored = await page.evaluate(() => [sessionStorage.getItem("edgehook-admin-token"), localStorage.length]);
  if (stored[0] !== token || stored[1] !== 0) throw new Error(`token storage: ${JSON.stringify(stored)}`);
  step("logged-in");

  // See an event, with its attempts and exact body (the listing narrowed to its source).
  await page.getByTestId("event-source").fill(eventSource);
  await page.getByTestId("event-source").press("Enter");
  const row = page.locator(`[data-testid=event-row][data-id="${eventId}"]`);
  await row.waitFor();
  await row.click();
  await page.getByTestId("event-body").filter({ hasText: eventId }).waitFor();
  await page.getByTestId("attempt-row").first().waitFor();
  step("event-seen");

  // Replay the dead letter; its row goes away once the replay is delivered.
  const letter = page.locator(`[data-testid=dead-letter-row][data-id="${deadId}"]`);
  await letter.waitFor();
  await letter.getByTestId("replay-dead-letter").click();
  await page.getByTestId("message").filter({ hasText: "Replayed 1 dead letter" }).waitFor();
  await letter.waitFor({ state: "detached" });
  step("dead-letter-replayed");

  // Pause an event type with the form.
  await page.getByTestId("flag-source").fill(pauseSource);
  await page.getByTestId("flag-pattern").fill(pausePattern);
  await page.getByTestId("flag-mode").selectOption("paused");
  await page.getByTestId("flag-set").click();
  const flag = page.locator(`[data-testid=flag-row][data-source="${pauseSource}"][data-pattern="${pausePattern}"]`);
  await flag.getByTestId("flag-mode-cell").filter({ hasText: "paused" }).waitFor();
  step("paused");
  await waitForGo(); // the suite has sent events and seen them held

  // Resume it with the row's toggle.
  await page.getByTestId("refresh").click();
  await flag.getByTestId("flag-on").click();
  await flag.getByTestId("flag-mode-cell").filter({ hasText: "on" }).waitFor();
  await page.getByTestId("message").filter({ hasText: "resumed" }).waitFor();
  step("resumed");
} catch (e) {
  failures.push(e.stack || String(e));
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`FAILED\n${failures.join("\n")}`);
  process.exit(1);
}
console.log("DONE");
process.exit(0);

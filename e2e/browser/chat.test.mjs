// Drives the `oort demo` chat page in headless Chromium, as two people would:
// two pages join with different names, both see the join notices, one sends a message and
// both see it, the other answers, and a page that leaves is announced.
//
//   node e2e/browser/chat.test.mjs http://127.0.0.1:PORT/
//
// Exits 0 on success and non-zero on any failure, always within OVERALL_TIMEOUT_MS.
// The browser is Debian's (`apt-get install chromium`), or $OORT_CHROMIUM; playwright never
// downloads one.

import { CHROMIUM, launch, requireChromium, say, step, waitForText, watchdog } from "./harness.mjs";

const STEP_TIMEOUT_MS = 15_000;
const OVERALL_TIMEOUT_MS = 90_000;

const url = process.argv[2];
if (!url) {
  console.error("usage: node chat.test.mjs URL");
  process.exit(2);
}
requireChromium();

const timer = watchdog(OVERALL_TIMEOUT_MS);

/** Opens the page and joins the chat as `name`. */
async function join(context, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("pageerror", (err) => console.error(`[${name}] page error: ${err}`));
  await page.goto(url, { waitUntil: "load" });
  await page.fill("#name", name);
  await page.click("#join button[type=submit]");
  await page.waitForSelector("#chat:not([hidden])");
  await waitForText(page, "#status", `Connected as ${name}`);
  return page;
}



let browser;
let failed = false;
try {
  step(`launch ${CHROMIUM}`);
  browser = await launch(STEP_TIMEOUT_MS * 2);
  const { context } = browser;

  step("Alice joins");
  const alice = await join(context, "Alice");
  await waitForText(alice, "#log", "Alice joined (1 online)");

  step("Bob joins; both see it");
  const bob = await join(context, "Bob");
  await waitForText(bob, "#log", "Bob joined (2 online)");
  await waitForText(alice, "#log", "Bob joined (2 online)");

  step("Alice speaks; both see it");
  await say(alice, "hello from Alice");
  await waitForText(alice, "#log", "Alice: hello from Alice");
  await waitForText(bob, "#log", "Alice: hello from Alice");

  step("Bob answers; both see it");
  await say(bob, "hi Alice, Bob here");
  await waitForText(alice, "#log", "Bob: hi Alice, Bob here");
  await waitForText(bob, "#log", "Bob: hi Alice, Bob here");

  step("Bob leaves; Alice sees it");
  await bob.close();
  await waitForText(alice, "#log", "Bob left (1 online)");

  console.log("PASS: two browser pages chatted through oort demo");
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err?.stack || err}`);
} finally {
  await browser?.close();
  clearTimeout(timer);
}
process.exit(failed ? 1 : 0);

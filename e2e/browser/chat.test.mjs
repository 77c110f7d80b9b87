// Drives the `oort demo` chat page in headless Chromium, as three people would, in rooms:
// Alice and Bob join #lobby (picked in the room list), Carol #rust (from the URL's ?room=); each
// sees the joins of their own room only and a who's-online list of their room. Messages reach
// their room only. Bob switches to #rust (Alice sees him leave, Carol sees him arrive and both
// in her list), speaks there unheard in #lobby, and leaves (Carol sees it).
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

/** Opens `pageUrl` and joins the chat as `name`, in `room` picked from the list unless null. */
async function join(context, name, room, pageUrl = url) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("pageerror", (err) => console.error(`[${name}] page error: ${err}`));
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.fill("#name", name);
  if (room) await page.selectOption("#room", room);
  await page.click("#join button[type=submit]");
  await page.waitForSelector("#chat:not([hidden])");
  await waitForText(page, "#status", `Connected as ${name}`);
  return page;
}

/** Waits until the page's who's-online list names exactly `names`, in order. */
async function waitForWho(page, names) {
  try {
    await page.waitForFunction(
      (want) => [...document.querySelectorAll("#who-list li")].map((li) => li.dataset.name).join(",") === want,
      names.join(","),
    );
  } catch {
    const seen = await page.$$eval("#who-list li", (lis) => lis.map((li) => li.textContent)).catch(() => "(unreadable)");
    throw new Error(`the who's-online list never showed ${JSON.stringify(names)}; it shows ${JSON.stringify(seen)}`);
  }
}

/** Fails if the page's log shows `text`. */
async function notInLog(page, who, text) {
  const lines = await page.$$eval("#log p", (ps) => ps.map((p) => p.textContent));
  const seen = lines.filter((l) => l.includes(text));
  if (seen.length) throw new Error(`${who}'s tab shows ${JSON.stringify(seen)}, from another room`);
}

let browser;
let failed = false;
try {
  step(`launch ${CHROMIUM}`);
  browser = await launch(STEP_TIMEOUT_MS * 2);
  const { context } = browser;

  step("Alice joins #lobby");
  const alice = await join(context, "Alice", "lobby");
  await waitForText(alice, "#log", "Alice joined (1 online)");
  await waitForText(alice, "#room-name", "#lobby", true);
  await waitForWho(alice, ["Alice"]);

  step("Bob joins #lobby; both see it, and both in the list");
  const bob = await join(context, "Bob", "lobby");
  await waitForText(bob, "#log", "Bob joined (2 online)");
  await waitForText(alice, "#log", "Bob joined (2 online)");
  for (const page of [alice, bob]) await waitForWho(page, ["Alice", "Bob"]);

  step("Carol joins #rust from the URL; only she sees it");
  const carol = await join(context, "Carol", null, new URL("?room=rust", url).href);
  await waitForText(carol, "#status", "Connected as Carol in #rust");
  await waitForText(carol, "#log", "Carol joined (1 online)");
  await waitForWho(carol, ["Carol"]);

  step("Alice speaks in #lobby; Bob sees it");
  await say(alice, "hello from Alice");
  await waitForText(alice, "#log", "Alice: hello from Alice");
  await waitForText(bob, "#log", "Alice: hello from Alice");

  step("Carol speaks in #rust; then Bob answers in #lobby: Alice sees Bob's, never Carol's");
  await say(carol, "anyone into Rust?");
  await waitForText(carol, "#log", "Carol: anyone into Rust?");
  await say(bob, "hi Alice, Bob here");
  await waitForText(alice, "#log", "Bob: hi Alice, Bob here");
  await waitForText(bob, "#log", "Bob: hi Alice, Bob here");
  // Carol's message was published before Bob's: it would have reached #lobby by now.
  for (const [page, who] of [
    [alice, "Alice"],
    [bob, "Bob"],
  ]) {
    await notInLog(page, who, "anyone into Rust?");
    await notInLog(page, who, "Carol joined");
  }
  for (const text of ["hello from Alice", "hi Alice", "Alice joined", "Bob joined"]) await notInLog(carol, "Carol", text);
  await waitForWho(alice, ["Alice", "Bob"]);

  step("Bob switches to #rust: Alice sees him leave, Carol sees him arrive");
  await bob.selectOption("#room", "rust");
  await waitForText(bob, "#status", "Connected as Bob in #rust (2 online)");
  await waitForText(bob, "#log", "Bob joined (2 online)");
  await waitForText(carol, "#log", "Bob joined (2 online)");
  await waitForText(alice, "#log", "Bob left (1 online)");
  for (const page of [bob, carol]) await waitForWho(page, ["Bob", "Carol"]);
  await waitForWho(alice, ["Alice"]);

  step("Bob speaks in #rust; Carol sees it, Alice does not");
  await say(bob, "Rust here too");
  await waitForText(carol, "#log", "Bob: Rust here too");
  await say(alice, "alone now");
  await waitForText(alice, "#log", "Alice: alone now");
  await notInLog(alice, "Alice", "Rust here too");
  await notInLog(bob, "Bob", "alone now");
  await notInLog(carol, "Carol", "alone now");

  step("Bob leaves; Carol sees it");
  await bob.close();
  await waitForText(carol, "#log", "Bob left (1 online)");
  await waitForWho(carol, ["Carol"]);

  console.log("PASS: three browser pages chatted through oort demo, each room to itself");
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err?.stack || err}`);
} finally {
  await browser?.close();
  clearTimeout(timer);
}
process.exit(failed ? 1 : 0);

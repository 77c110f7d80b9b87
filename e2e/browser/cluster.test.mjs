// Drives `oort demo --nodes 2` in headless Chromium: a session moves between nodes.
//   1. Tab A (Ann) opens node n1's page, tab B (Ben) node n2's, both in #lobby; each shows its
//      node, the cluster's leader, a restart button per node, and both in the room's
//      who's-online list with their nodes; they chat both ways across the nodes. Tab C (Cat)
//      is in #rust on n2: it hears none of #lobby, and #lobby none of it.
//   2. Both tabs keep sending; mid-conversation Ann clicks "Restart n1" (the supervisor
//      SIGTERMs n1: it drains, closing its clients with 1012). Ann's tab resumes on n2 (its
//      #node changes, #state is resumed or connected, no reset), n1 comes back.
//   3. Every message appears exactly once, in its sender's order, in both tabs; the
//      who's-online list shows Ann on n2 (her session took its channels along).
//
//   node e2e/browser/cluster.test.mjs http://127.0.0.1:PORT1/ http://127.0.0.1:PORT2/
//
// Exits 0 on success and non-zero on any failure, always within OVERALL_TIMEOUT_MS.
// The browser is Debian's (`apt-get install chromium`), or $OORT_CHROMIUM.

import { CHROMIUM, launch, requireChromium, say, sendSlowly, step, waitForText, watchdog } from "./harness.mjs";

const STEP_TIMEOUT_MS = 20_000;
const OVERALL_TIMEOUT_MS = 150_000;
const SETTLE_MS = 1_500;
const COUNT = 30; // messages per tab while the node restarts
const EVERY_MS = 150;

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
  console.error("usage: node cluster.test.mjs NODE1_URL NODE2_URL");
  process.exit(2);
}
requireChromium();

const timer = watchdog(OVERALL_TIMEOUT_MS);

const problems = []; // page errors and oort.js console warnings (a gap, an offset mismatch)

/** Opens `url` and joins the chat as `name`; returns once connected. */
async function join(context, url, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("pageerror", (err) => {
    console.error(`[${name}] page error: ${err}`);
    problems.push(`[${name}] page error: ${err}`);
  });
  page.on("console", (msg) => {
    const text = msg.text();
    if (text.startsWith("oort:")) {
      console.error(`[${name}] console ${msg.type()}: ${text}`);
      problems.push(`[${name}] ${text}`);
    }
  });
  // Every state the client goes through, for the assertions and the failure report.
  await page.addInitScript(() => {
    window.__states = [];
  });
  await page.goto(url, { waitUntil: "load" });
  await page.fill("#name", name);
  await page.click("#join button[type=submit]");
  await page.waitForSelector("#chat:not([hidden])");
  await waitForText(page, "#status", `Connected as ${name}`);
  // Record #state changes (the page updates it on each state event).
  await page.evaluate(() => {
    const el = document.querySelector("#state");
    window.__states.push(el.textContent);
    const node = document.querySelector("#node");
    new MutationObserver(() => {
      const now = `${el.textContent}@${node.textContent}`;
      if (window.__states.at(-1) !== now) window.__states.push(now);
    }).observe(el, { childList: true, characterData: true, subtree: true });
  });
  return page;
}

/** Waits until `fn(arg)` is true in the page; on timeout, explains with `what`. */
async function waitFor(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS });
  } catch {
    const seen = await page
      .evaluate(() => ({
        state: document.querySelector("#state")?.textContent,
        node: document.querySelector("#node")?.textContent,
        transport: document.querySelector("#transport")?.textContent,
        states: window.__states,
      }))
      .catch(() => "(unreadable)");
    throw new Error(`${what} did not happen within ${STEP_TIMEOUT_MS} ms; the page shows ${JSON.stringify(seen)}`);
  }
}




async function logLines(page) {
  return page.$$eval("#log p", (ps) => ps.map((p) => p.textContent));
}

/** Waits until the page's who's-online list reads exactly `entries` ("name · node"), in order. */
async function waitForWho(page, who, entries) {
  await waitFor(
    page,
    `${who}'s who's-online list showing ${JSON.stringify(entries)}`,
    (want) => [...document.querySelectorAll("#who-list li")].map((li) => li.textContent).join(",") === want,
    entries.join(","),
  );
}

async function nodeOf(page) {
  return (await page.textContent("#node")).trim();
}

let browser;
let failed = false;
try {
  step(`launch ${CHROMIUM}`);
  browser = await launch(STEP_TIMEOUT_MS * 2, { viewport: { width: 900, height: 900 } });
  const { context } = browser;

  step(`Ann joins on ${urlA}`);
  const ann = await join(context, urlA, "Ann");
  step(`Ben joins on ${urlB}`);
  const ben = await join(context, urlB, "Ben");
  for (const [page, name, want] of [
    [ann, "Ann", "n1"],
    [ben, "Ben", "n2"],
  ]) {
    await waitForText(page, "#node", want, true);
    await waitForText(page, "#transport", "websocket", true);
    // The cluster panel: both nodes with a restart button, and a leader.
    await waitFor(
      page,
      `${name}'s cluster panel with a leader and two restart buttons`,
      () =>
        document.querySelectorAll("#members button.restart:not([disabled])").length === 2 &&
        /^n\d$/.test(document.querySelector("#leader")?.textContent ?? ""),
    );
    console.log(`  ${name}: node ${await nodeOf(page)}, leader ${(await page.textContent("#leader")).trim()}`);
  }

  step("#lobby spans both nodes: each tab lists Ann on n1 and Ben on n2");
  for (const [page, name] of [
    [ann, "Ann"],
    [ben, "Ben"],
  ]) {
    await waitForWho(page, name, ["Ann \u00b7 n1", "Ben \u00b7 n2"]);
  }
  step(`Cat joins #rust on ${urlB}`);
  const cat = await join(context, new URL("?room=rust", urlB).href, "Cat");
  await waitForWho(cat, "Cat", ["Cat \u00b7 n2"]);
  await say(cat, "Cat in #rust");
  await waitForText(cat, "#log", "Cat: Cat in #rust");

  step("they chat both ways");
  await say(ann, "hello from Ann on n1");
  await say(ben, "hi Ann, Ben on n2");
  const expected = ["Ann: hello from Ann on n1", "Ben: hi Ann, Ben on n2"];
  for (const page of [ann, ben]) for (const want of expected) await waitForText(page, "#log", want);
  // Cat's message was published first: it would be in #lobby by now.
  for (const [page, who] of [
    [ann, "Ann"],
    [ben, "Ben"],
  ]) {
    const leaked = (await logLines(page)).filter((l) => l.includes("Cat"));
    if (leaked.length) throw new Error(`${who}'s tab (#lobby) shows ${JSON.stringify(leaked)} from #rust`);
  }

  step(`both keep sending (${COUNT} each, one every ${EVERY_MS} ms); Ann restarts n1 meanwhile`);
  const fromAnn = Array.from({ length: COUNT }, (_, i) => `Ann says ${i}`);
  const fromBen = Array.from({ length: COUNT }, (_, i) => `Ben says ${i}`);
  const sending = Promise.all([sendSlowly(ann, fromAnn, EVERY_MS), sendSlowly(ben, fromBen, EVERY_MS)]);
  await waitForText(ann, "#log", `Ann: ${fromAnn[4]}`);
  step("Ann clicks Restart n1");
  await ann.click('#members button.restart[data-node="n1"]');
  await waitFor(
    ann,
    "Ann's tab resuming on n2",
    () =>
      document.querySelector("#node")?.textContent.trim() === "n2" &&
      ["resumed", "connected"].includes(document.querySelector("#state")?.textContent.trim()),
  );
  step(`Ann's tab is on ${await nodeOf(ann)}, ${(await ann.textContent("#state")).trim()}`);
  await sending;
  step("all sent");
  for (const page of [ann, ben]) {
    await waitForText(page, "#log", `Ann: ${fromAnn.at(-1)}`);
    await waitForText(page, "#log", `Ben: ${fromBen.at(-1)}`);
  }
  step("n1 comes back");
  await waitFor(
    ann,
    "n1 running again in the cluster panel",
    () => {
      const li = document.querySelector('#members li[data-node="n1"]');
      return li && li.querySelector(".role")?.textContent.startsWith("running") && !li.querySelector("button")?.disabled;
    },
  );
  step("the who's-online list shows Ann on n2 now");
  await waitForWho(ann, "Ann", ["Ann \u00b7 n2", "Ben \u00b7 n2"]);
  step("Ben speaks after the restart; Ann sees it");
  await say(ben, "welcome back");
  for (const page of [ann, ben]) await waitForText(page, "#log", "Ben: welcome back");
  await new Promise((r) => setTimeout(r, SETTLE_MS)); // a duplicate would show up by now

  expected.push(...fromAnn.map((t) => `Ann: ${t}`), ...fromBen.map((t) => `Ben: ${t}`), "Ben: welcome back");
  for (const [page, who] of [
    [ann, "Ann"],
    [ben, "Ben"],
  ]) {
    const lines = await logLines(page);
    for (const want of expected) {
      const n = lines.filter((l) => l === want).length;
      if (n !== 1) throw new Error(`${who}'s tab shows ${JSON.stringify(want)} ${n} times, not once`);
    }
    for (const [sender, sent] of [
      ["Ann", fromAnn],
      ["Ben", fromBen],
    ]) {
      const at = sent.map((t) => lines.indexOf(`${sender}: ${t}`));
      if (at.some((i, k) => k > 0 && i < at[k - 1])) throw new Error(`${who}'s tab shows ${sender}'s messages out of order`);
    }
    const lost = lines.filter((l) => l.startsWith("Connection lost"));
    if (lost.length) throw new Error(`${who}'s tab lost its session: ${lost.join("; ")}`);
    const states = await page.evaluate(() => window.__states);
    if (states.some((s) => s.startsWith("reset") || s.startsWith("closed"))) {
      throw new Error(`${who}'s tab went through ${JSON.stringify(states)}`);
    }
    console.log(`  ${who}: ${lines.length} lines, states ${states.join(" ")}`);
  }
  const joined = (await logLines(ann)).filter((l) => l.startsWith("Ben joined")).length;
  if (joined !== 1) throw new Error(`Ann's tab shows "Ben joined" ${joined} times, not once`);
  const heard = (await logLines(cat)).filter((l) => /^(Ann|Ben)/.test(l));
  if (heard.length) throw new Error(`Cat's tab (#rust) shows #lobby's ${JSON.stringify(heard.slice(0, 3))}...`);
  if (problems.length) throw new Error(`oort.js reported problems:\n  ${problems.join("\n  ")}`);
  console.log(
    "PASS: #lobby spanned both nodes, #rust stayed apart; Ann's tab moved from n1 to n2 while n1 restarted; every message once, in order, in both tabs",
  );
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err?.stack || err}`);
} finally {
  await browser?.close();
  clearTimeout(timer);
}
process.exit(failed ? 1 : 0);

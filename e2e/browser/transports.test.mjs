// Drives the `oort demo` chat page (which uses /oort.js) in headless Chromium with transports
// blocked, as a corporate proxy would:
//   0. nothing blocked: the page is on `websocket`; one message round trip.
//   a. every WebSocket to the gateway fails: two tabs fall back to `sse` and chat both ways,
//      each message exactly once in each tab.
//   b. WebSockets and SSE (`live=sse`) both fail: two tabs fall back to `long-poll` and chat
//      both ways, each message exactly once in each tab.
//   c. back to WebSocket: two tabs open `?ws_retry_ms=2000` with WebSockets blocked (so they
//      are on `sse`), keep sending, and WebSockets are unblocked meanwhile: oort.js's
//      background retry takes both back to `websocket`, each message exactly once, in order,
//      in each tab, and no reset.
//
//   node e2e/browser/transports.test.mjs http://127.0.0.1:PORT/ [screenshot.png]
//
// The screenshot (default /tmp/oort-demo.png) shows a connected page (one of the `sse` tabs)
// with its transport, state and node. Exits 0 on success and non-zero on any failure, always within OVERALL_TIMEOUT_MS.
// The browser is Debian's (`apt-get install chromium`), or $OORT_CHROMIUM.

import { statSync } from "node:fs";

import { CHROMIUM, launch, requireChromium, say, sendSlowly, step, waitForText, watchdog } from "./harness.mjs";

const STEP_TIMEOUT_MS = 20_000;
const OVERALL_TIMEOUT_MS = 150_000;
const SETTLE_MS = 1_500;

const url = process.argv[2];
const screenshot = process.argv[3] || "/tmp/oort-demo.png";
if (!url) {
  console.error("usage: node transports.test.mjs URL [screenshot.png]");
  process.exit(2);
}
requireChromium();

const timer = watchdog(OVERALL_TIMEOUT_MS);

const problems = []; // console warnings from oort.js and page errors: any fails the test

/** Opens the page and joins the chat as `name`; returns once it is connected. */
async function join(context, name, query = "") {
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
  await page.goto(url + query, { waitUntil: "load" });
  await page.fill("#name", name);
  await page.click("#join button[type=submit]");
  await page.waitForSelector("#chat:not([hidden])");
  await waitForText(page, "#status", `Connected as ${name}`);
  return page;
}


/** How many lines of #log are exactly `text`. */
async function countLines(page, text) {
  return page.$$eval("#log p", (ps, want) => ps.filter((p) => p.textContent === want).length, text);
}

/** Submits each of `texts` through the page's form, back to back. */
async function burst(page, texts) {
  await page.evaluate((all) => {
    const input = document.querySelector("#message");
    const form = document.querySelector("#send");
    for (const text of all) {
      input.value = text;
      form.requestSubmit();
    }
  }, texts);
}


/** Records every #state the page shows, as state@transport, in window.__states. */
async function recordStates(page) {
  await page.evaluate(() => {
    const state = document.querySelector("#state");
    const transport = document.querySelector("#transport");
    window.__states = [`${state.textContent}@${transport.textContent}`];
    const record = () => {
      const now = `${state.textContent}@${transport.textContent}`;
      if (window.__states.at(-1) !== now) window.__states.push(now);
    };
    for (const el of [state, transport]) {
      new MutationObserver(record).observe(el, { childList: true, characterData: true, subtree: true });
    }
  });
}


async function expectTransport(page, name, transport) {
  await waitForText(page, "#transport", transport, true);
  await page.waitForFunction(
    () => ["connected", "resumed"].includes(document.querySelector("#state")?.textContent.trim()),
    null,
    { timeout: STEP_TIMEOUT_MS },
  );
  const node = (await page.textContent("#node")).trim();
  console.log(`  ${name}: transport ${transport}, state ${(await page.textContent("#state")).trim()}, node ${node}`);
  return node;
}

/** Two tabs chat both ways; every line appears exactly once in each. */
async function chatBothWays(first, second, names, tag) {
  const [a, b] = names;
  const lines = [`${a}: hello from ${a} ${tag}`, `${b}: hi ${a}, ${b} here ${tag}`];
  step(`${a} speaks; both see it`);
  await say(first, `hello from ${a} ${tag}`);
  for (const page of [first, second]) await waitForText(page, "#log", lines[0]);
  step(`${b} answers; both see it`);
  await say(second, `hi ${a}, ${b} here ${tag}`);
  for (const page of [first, second]) await waitForText(page, "#log", lines[1]);
  // Submitted from inside the pages (Playwright's clicks in a background tab wait for
  // animation frames it does not get), so both bursts go out at once and interleave.
  step(`a burst of 10 from ${a} while ${b} sends 10`);
  const burstA = Array.from({ length: 10 }, (_, i) => `burst ${a} ${i} ${tag}`);
  const burstB = Array.from({ length: 10 }, (_, i) => `burst ${b} ${i} ${tag}`);
  await Promise.all([burst(first, burstA), burst(second, burstB)]);
  step("bursts sent");
  for (const page of [first, second]) {
    await waitForText(page, "#log", `${a}: ${burstA.at(-1)}`);
    await waitForText(page, "#log", `${b}: ${burstB.at(-1)}`);
  }
  step("bursts seen");
  lines.push(...burstA.map((t) => `${a}: ${t}`), ...burstB.map((t) => `${b}: ${t}`));
  await new Promise((r) => setTimeout(r, SETTLE_MS)); // a duplicate would show up by now
  for (const [page, who] of [
    [first, a],
    [second, b],
  ]) {
    for (const want of lines) {
      const n = await countLines(page, want);
      if (n !== 1) throw new Error(`${who}'s tab shows ${JSON.stringify(want)} ${n} times, not once`);
    }
    // Messages from one sender arrive in the order sent.
    const order = await page.$$eval("#log p", (ps) => ps.map((p) => p.textContent));
    for (const burst of [burstA, burstB]) {
      const sender = burst === burstA ? a : b;
      const at = burst.map((t) => order.indexOf(`${sender}: ${t}`));
      if (at.some((i, k) => k > 0 && i < at[k - 1])) throw new Error(`${who}'s tab shows ${sender}'s burst out of order`);
    }
  }
  const joined = await first.$$eval(
    "#log p",
    (ps, n) => ps.filter((p) => p.textContent.startsWith(`${n} joined`)).length,
    b,
  );
  if (joined !== 1) throw new Error(`${a}'s tab shows "${b} joined" ${joined} times, not once`);
}


/** Makes every WebSocket to the gateway's connect path fail; counts them. */
async function blockWebSockets(context, counts) {
  await context.routeWebSocket(/\/connect/, (ws) => {
    counts.ws++;
    ws.close({ code: 1011, reason: "blocked by the test" });
  });
}

/** Makes every SSE read fail as a network error; counts them. */
async function blockSse(context, counts) {
  await context.route(
    (u) => u.searchParams.get("live") === "sse",
    (route) => {
      counts.sse++;
      route.abort("failed");
    },
  );
}

const browsers = []; // each { context, close }
let failed = false;
try {
  step(`launch ${CHROMIUM}`);

  // 0. Nothing blocked: WebSocket.
  {
    const browser = await launch(STEP_TIMEOUT_MS * 2, { viewport: { width: 900, height: 820 } });
    browsers.push(browser);
    const { context } = browser;
    step("websocket: Wendy joins");
    const wendy = await join(context, "Wendy");
    await expectTransport(wendy, "Wendy", "websocket");
    await say(wendy, "hello over websocket");
    await waitForText(wendy, "#log", "Wendy: hello over websocket");
    await wendy.close();
    await browsers.pop().close();
  }

  // a. WebSockets blocked: SSE.
  {
    const browser = await launch(STEP_TIMEOUT_MS * 2, { viewport: { width: 900, height: 820 } });
    browsers.push(browser);
    const { context } = browser;
    const counts = { ws: 0, sse: 0 };
    await blockWebSockets(context, counts);
    step("sse: Alice joins with WebSockets blocked");
    const alice = await join(context, "Alice");
    const aliceNode = await expectTransport(alice, "Alice", "sse");
    step("sse: Bob joins");
    const bob = await join(context, "Bob");
    await expectTransport(bob, "Bob", "sse");
    if (counts.ws < 2) throw new Error(`only ${counts.ws} WebSocket attempts were blocked; expected 2 or more`);
    if (!aliceNode || aliceNode === "\u2013") throw new Error("the page on sse does not show its node");
    await chatBothWays(alice, bob, ["Alice", "Bob"], "(sse)");
    await expectTransport(alice, "Alice", "sse");
    await expectTransport(bob, "Bob", "sse");
    console.log(`  blocked: ${counts.ws} WebSockets`);
    step(`screenshot of Alice's tab (sse) in ${screenshot}`);
    await alice.screenshot({ path: screenshot, fullPage: true });
    const size = statSync(screenshot).size;
    if (size < 1000) throw new Error(`the screenshot ${screenshot} has only ${size} bytes`);
    step("sse: Bob leaves; Alice sees it");
    await bob.close();
    await waitForText(alice, "#log", "Bob left");
    await alice.close();
    await browsers.pop().close();
  }

  // b. WebSockets and SSE blocked: long-poll.
  {
    const browser = await launch(STEP_TIMEOUT_MS * 2, { viewport: { width: 900, height: 820 } });
    browsers.push(browser);
    const { context } = browser;
    const counts = { ws: 0, sse: 0 };
    await blockWebSockets(context, counts);
    await blockSse(context, counts);
    step("long-poll: Carol joins with WebSockets and SSE blocked");
    const carol = await join(context, "Carol");
    await expectTransport(carol, "Carol", "long-poll");
    step("long-poll: Dave joins");
    const dave = await join(context, "Dave");
    await expectTransport(dave, "Dave", "long-poll");
    if (counts.sse < 2) throw new Error(`only ${counts.sse} SSE reads were blocked; expected 2 or more`);
    await chatBothWays(carol, dave, ["Carol", "Dave"], "(long-poll)");
    await expectTransport(carol, "Carol", "long-poll");
    await expectTransport(dave, "Dave", "long-poll");
    console.log(`  blocked: ${counts.ws} WebSockets, ${counts.sse} SSE reads`);
    step("long-poll: Dave leaves; Carol sees it");
    await dave.close();
    await waitForText(carol, "#log", "Dave left");
    await carol.close();
    await browsers.pop().close();
  }

  // c. Back to WebSocket once WebSockets get through again.
  {
    const browser = await launch(STEP_TIMEOUT_MS * 2, { viewport: { width: 900, height: 820 } });
    browsers.push(browser);
    const { context } = browser;
    const counts = { ws: 0, passed: 0 };
    let blocked = true;
    await context.routeWebSocket(/\/connect/, (ws) => {
      if (blocked) {
        counts.ws++;
        ws.close({ code: 1011, reason: "blocked by the test" });
      } else {
        counts.passed++;
        ws.connectToServer(); // unhandled messages pass through both ways
      }
    });
    step("back to websocket: Erin and Finn join with WebSockets blocked");
    const erin = await join(context, "Erin", "?ws_retry_ms=2000");
    await expectTransport(erin, "Erin", "sse");
    const finn = await join(context, "Finn", "?ws_retry_ms=2000");
    await expectTransport(finn, "Finn", "sse");
    await recordStates(erin);
    await recordStates(finn);
    const count = 30;
    const fromErin = Array.from({ length: count }, (_, i) => `Erin switches ${i}`);
    const fromFinn = Array.from({ length: count }, (_, i) => `Finn switches ${i}`);
    step(`both send ${count} messages, one every 200 ms; WebSockets are unblocked meanwhile`);
    const sending = Promise.all([sendSlowly(erin, fromErin, 200), sendSlowly(finn, fromFinn, 200)]);
    await waitForText(erin, "#log", `Erin: ${fromErin[3]}`);
    blocked = false;
    step("unblocked; waiting for the background retry");
    for (const [page, name] of [
      [erin, "Erin"],
      [finn, "Finn"],
    ]) {
      await expectTransport(page, name, "websocket");
    }
    await sending;
    step("all sent");
    const lines = [...fromErin.map((t) => `Erin: ${t}`), ...fromFinn.map((t) => `Finn: ${t}`)];
    for (const page of [erin, finn]) {
      await waitForText(page, "#log", lines[count - 1]);
      await waitForText(page, "#log", lines.at(-1));
    }
    await new Promise((r) => setTimeout(r, SETTLE_MS)); // a duplicate would show up by now
    for (const [page, who] of [
      [erin, "Erin"],
      [finn, "Finn"],
    ]) {
      const shown = await page.$$eval("#log p", (ps) => ps.map((p) => p.textContent));
      for (const want of lines) {
        const n = shown.filter((l) => l === want).length;
        if (n !== 1) throw new Error(`${who}'s tab shows ${JSON.stringify(want)} ${n} times, not once`);
      }
      for (const [sender, sent] of [
        ["Erin", fromErin],
        ["Finn", fromFinn],
      ]) {
        const at = sent.map((t) => shown.indexOf(`${sender}: ${t}`));
        if (at.some((i, k) => k > 0 && i < at[k - 1])) throw new Error(`${who}'s tab shows ${sender}'s messages out of order`);
      }
      const states = await page.evaluate(() => window.__states);
      if (states.some((s) => s.startsWith("reset") || s.startsWith("closed"))) {
        throw new Error(`${who}'s tab went through ${JSON.stringify(states)}`);
      }
      if (shown.some((l) => l.startsWith("Connection lost"))) throw new Error(`${who}'s tab lost its session`);
      console.log(`  ${who}: states ${states.join(" ")}`);
    }
    console.log(`  blocked: ${counts.ws} WebSockets; passed after the unblock: ${counts.passed}`);
    await erin.close();
    await finn.close();
    await browsers.pop().close();
  }

  if (problems.length) throw new Error(`oort.js reported problems:\n  ${problems.join("\n  ")}`);
  console.log(
    "PASS: the demo page chatted over websocket, sse (WebSockets blocked), long-poll (both blocked), and went back from sse to websocket",
  );
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err?.stack || err}`);
} finally {
  for (const browser of browsers) await browser.close();
  clearTimeout(timer);
}
process.exit(failed ? 1 : 0);

// What the browser scripts share: the Chromium they drive (Debian's, or $OORT_CHROMIUM; playwright
// never downloads one), a watchdog that bounds the whole script, timed step logs, a browser
// profile that is removed afterwards, and the demo page's helpers (wait for text, send).

import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as joinPath } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.OORT_CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Exits 3 with install instructions when the browser is missing. */
export function requireChromium() {
  if (!existsSync(CHROMIUM)) {
    console.error(`${CHROMIUM} is missing: apt-get install -y chromium (or set OORT_CHROMIUM)`);
    process.exit(3);
  }
}

/** Fails the script (exit 4) unless it ends within `ms`; returns the timer to clear. */
export function watchdog(ms) {
  return setTimeout(() => {
    console.error(`FAIL: the browser test did not finish within ${ms} ms`);
    process.exit(4);
  }, ms);
}

const startedAt = Date.now();
/** Logs a step with the seconds since the script started. */
export function step(text) {
  console.log(`step (${((Date.now() - startedAt) / 1000).toFixed(1)} s): ${text}`);
}

/**
 * Launches Chromium with a fresh profile; `close()` ends it and removes the profile.
 * `options` go to playwright's launchPersistentContext (a viewport, say).
 */
export async function launch(timeoutMs, options = {}) {
  const profile = mkdtempSync(joinPath(tmpdir(), "oort-chromium-"));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      timeout: timeoutMs,
      ...options,
    });
    const close = async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    };
    return { context, close };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}

/** Waits (up to the page's default timeout) until the element's text contains `text`, or
 * equals it with `exact`. */
export async function waitForText(page, selector, text, exact = false) {
  try {
    await page.waitForFunction(
      ([sel, want, whole]) => {
        const seen = document.querySelector(sel)?.textContent ?? "";
        return whole ? seen.trim() === want : seen.includes(want);
      },
      [selector, text, exact],
    );
  } catch {
    const seen = await page.textContent(selector).catch(() => "(unreadable)");
    throw new Error(`${selector} never showed ${JSON.stringify(text)}; it shows ${JSON.stringify(seen)}`);
  }
}

/** Types `text` into the demo page's message box and sends it. */
export async function say(page, text) {
  await page.fill("#message", text);
  await page.click("#send button[type=submit]");
}

/** Sends `texts` from inside the demo page, one every `every` ms; resolves when all are submitted. */
export function sendSlowly(page, texts, every) {
  return page.evaluate(
    ([all, ms]) =>
      new Promise((resolve) => {
        const input = document.querySelector("#message");
        const form = document.querySelector("#send");
        let i = 0;
        const timer = setInterval(() => {
          input.value = all[i];
          form.requestSubmit();
          if (++i >= all.length) {
            clearInterval(timer);
            resolve();
          }
        }, ms);
      }),
    [texts, every],
  );
}

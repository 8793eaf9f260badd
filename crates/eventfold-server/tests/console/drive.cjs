// Drives the eventfold console in a real Chromium (playwright-core), as a person would:
// run by tests/console.rs, which starts the servers and says where everything is.
//   OPEN_URL      a server without --auth
//   SECURE_URL    a server with --auth, ADMIN_TOKEN and NOBODY_TOKEN (a user with no roles)
//   PLAYWRIGHT_DIR  a directory holding node_modules/playwright-core
//   CHROMIUM      the browser binary
//   SCREENSHOTS   (optional) a directory to save a screenshot of each page in
// Exits non-zero naming the step that failed.
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.PLAYWRIGHT_DIR, "node_modules", "playwright-core"));

const OPEN = process.env.OPEN_URL;
const SECURE = process.env.SECURE_URL;
const TIMEOUT = 15000;

function check(condition, what) {
  if (!condition) throw new Error("check failed: " + what);
}

async function call(base, method, route, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(base + route, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(method + " " + route + ": " + response.status + " " + text);
  return text ? JSON.parse(text) : null;
}

async function shot(page, name) {
  if (!process.env.SCREENSHOTS) return;
  await page.screenshot({ path: path.join(process.env.SCREENSHOTS, name + ".png"), fullPage: true });
}

/// Does `action`, then waits until the page it leads to is shown (the console counts
/// the pages it shows in #view's data-routes, and marks each loaded when done).
async function navigated(page, action) {
  const before = await page.evaluate(() => {
    const view = document.getElementById("view");
    return view ? Number(view.dataset.routes || 0) : 0;
  });
  await action();
  await page.waitForFunction((n) => {
    const view = document.getElementById("view");
    return Number(view.dataset.routes) > n && view.dataset.loaded === "true";
  }, before, { timeout: TIMEOUT });
}

async function step(name, body) {
  try {
    await body();
    console.log("ok " + name);
  } catch (error) {
    console.error("FAILED " + name + ": " + error.message);
    throw error;
  }
}

async function main() {
  // What the console will show: two orders, a schema with two versions, a consumer
  // group with a parked event, a projection.
  await call(OPEN, "POST", "/streams/order-1", [
    { type: "OrderPlaced", data: { id: "order-1", total: 42 } },
    { type: "OrderShipped", data: { carrier: "DHL" } },
  ]);
  await call(OPEN, "POST", "/streams/order-2", [{ type: "OrderPlaced", data: { id: "order-2", total: 7 } }]);
  await call(OPEN, "POST", "/streams/invoice-1", [{ type: "InvoiceSent", data: { amount: 42 } }]);
  await call(OPEN, "PUT", "/schemas/OrderPlaced/2", { upcast: "{id, total_cents: (.total * 100)}", downcast: "{id, total: (.total_cents / 100)}" });
  await call(OPEN, "PUT", "/projections/order-total", { init: 0, handlers: { OrderPlaced: ".state + .event.data.total_cents" } });
  await call(OPEN, "PUT", "/subscriptions/mailer", {});
  const delivered = await call(OPEN, "GET", "/subscriptions/mailer/next?count=1&wait_ms=1000");
  const position = delivered.deliveries[0].event.position;
  await call(OPEN, "POST", "/subscriptions/mailer/nack", { positions: [position], action: "park", reason: "the mail server refused it" });

  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, headless: true, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    page.setDefaultTimeout(TIMEOUT);
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));

    await step("/ leads to the console, which lists streams", async () => {
      await navigated(page, () => page.goto(OPEN + "/"));
      check(page.url().startsWith(OPEN + "/console"), "redirected to /console, at " + page.url());
      const names = await page.locator("a.stream-link").allTextContents();
      check(JSON.stringify(names) === JSON.stringify(["invoice-1", "order-1", "order-2"]), "streams listed: " + names);
      await shot(page, "streams");
    });

    await step("find a stream by searching", async () => {
      await page.fill("#prefix", "order");
      await navigated(page, () => page.click("form.toolbar button"));
      check(page.url().includes("prefix=order"), "the search is in the address: " + page.url());
      const names = await page.locator("a.stream-link").allTextContents();
      check(JSON.stringify(names) === JSON.stringify(["order-1", "order-2"]), "search found: " + names);
      await navigated(page, () => page.click("a.stream-link >> text=order-1"));
      check((await page.locator("#events tbody tr").count()) === 2, "two events of order-1");
      await shot(page, "stream");
    });

    await step("open an event, then choose another schema version", async () => {
      await navigated(page, () => page.click("a.event-link >> text=0"));
      const stored = JSON.parse(await page.textContent("#event-json"));
      check(stored.type === "OrderPlaced" && stored.version === 1 && stored.data.total === 42, "the stored event: " + JSON.stringify(stored));
      await navigated(page, () => page.selectOption("#version", "2"));
      const converted = JSON.parse(await page.textContent("#event-json"));
      check(converted.version === 2 && converted.data.total_cents === 4200, "converted to version 2: " + JSON.stringify(converted));
      await shot(page, "event");
    });

    await step("a live event arrives in the tail of $all", async () => {
      await page.click('nav a[data-nav="live"]');
      await page.waitForSelector('#live-status[data-ready="true"]');
      await call(OPEN, "POST", "/streams/order-3", [{ type: "OrderPlaced", data: { id: "order-3", total: 5 } }]);
      await page.waitForSelector("#live-events li >> text=0@order-3");
      await shot(page, "live");
    });

    await step("a consumer group shows its parked event, which is replayed", async () => {
      await navigated(page, () => page.click('nav a[data-nav="groups"]'));
      await shot(page, "groups");
      const parked = await page.textContent("#groups tbody tr td:last-child");
      check(parked.trim() === "1", "one event parked, shown: " + parked);
      await navigated(page, () => page.click("a.group-link >> text=mailer"));
      check((await page.locator("#parked tbody tr").count()) === 1, "the parked event is listed");
      check((await page.textContent("#parked")).includes("the mail server refused it"), "with its reason");
      await shot(page, "group");
      await page.click("#replay-parked");
      await page.waitForSelector('#replayed[data-queued="1"]');
      const again = await call(OPEN, "GET", "/subscriptions/mailer/next?count=10&wait_ms=1000");
      const positions = again.deliveries.map((d) => d.event.position);
      check(positions.includes(position), "the parked event is delivered again: " + JSON.stringify(positions));
    });

    await step("schemas, projections, health and the surgery log", async () => {
      await navigated(page, () => page.click('nav a[data-nav="schemas"]'));
      check((await page.textContent("#view")).includes("OrderPlaced"), "the schema is listed");
      await shot(page, "schemas");
      await navigated(page, () => page.click('nav a[data-nav="projections"]'));
      await page.fill("#state-stream", "order-1");
      await page.click("#view form button");
      await page.waitForFunction(() => document.getElementById("state-json").textContent.includes("revision"));
      const state = JSON.parse(await page.textContent("#state-json"));
      check(state.state === 4200 && state.revision === 1, "the state of order-1: " + JSON.stringify(state));
      await shot(page, "projections");
      await navigated(page, () => page.click('nav a[data-nav="health"]'));
      check(JSON.parse(await page.textContent("#health-json")).status === "ok", "health is ok");
      await shot(page, "health");
      await navigated(page, () => page.click('nav a[data-nav="surgery"]'));
      check((await page.locator("#no-surgery").count()) === 1, "no surgery on this store");
      // A surgery through the API, then the log shows its record.
      await call(OPEN, "POST", "/streams/cart-1", [{ type: "ItemAdded", data: { price: 1000 } }]);
      await call(OPEN, "POST", "/admin/surgery",
        { operation: "copy-replace", source: "cart-1", to: "cart-1-fixed", reason: "a price typed wrongly" });
      await navigated(page, () => page.click('nav a[data-nav="health"]'));
      await navigated(page, () => page.click('nav a[data-nav="surgery"]'));
      const log = await page.textContent("#surgery");
      check(log.includes("copy-replace") && log.includes("a price typed wrongly") && log.includes("cart-1-fixed"),
        "the surgery log shows the record: " + log);
      await shot(page, "surgery");
    });
    check(errors.length === 0, "no script error on the page: " + errors.join("; "));

    // Under --auth: nothing without a token, nothing a token may not read, everything
    // with one that may.
    await call(SECURE, "POST", "/streams/secret-1", [{ type: "Noted", data: { n: 1 } }], process.env.ADMIN_TOKEN);
    const secure = await browser.newPage();
    secure.setDefaultTimeout(TIMEOUT);
    await step("under --auth the console asks for a token and shows only what it may read", async () => {
      await navigated(secure, () => secure.goto(SECURE + "/console"));
      check((await secure.textContent("#error")).includes("unauthorized"), "without a token: " + (await secure.textContent("#error")));
      check((await secure.locator("a.stream-link").count()) === 0, "no stream shown without a token");
      await secure.fill("#token", process.env.NOBODY_TOKEN);
      await secure.click("#token-form button");
      await secure.waitForFunction(() => document.getElementById("error").textContent.includes("access_denied"));
      check((await secure.locator("a.stream-link").count()) === 0, "no stream shown to a token that may not list them");
      await secure.fill("#token", process.env.ADMIN_TOKEN);
      await secure.click("#token-form button");
      await secure.waitForSelector("a.stream-link >> text=secret-1");
      await secure.reload();
      await secure.waitForSelector("a.stream-link >> text=secret-1");
      check((await secure.inputValue("#token")) === process.env.ADMIN_TOKEN, "the token is kept for the session");
    });
  } finally {
    await browser.close();
  }
}

main().then(() => console.log("ok all"), () => process.exit(1));

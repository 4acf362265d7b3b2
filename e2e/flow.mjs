// The demo page's whole flow in a real browser: Playwright (playwright-core) driving Debian's
// Chromium, headless, against a running `atelier dev`. Run by scripts/e2e.sh (`make e2e`), which
// starts the server; alone: BASE_URL=http://127.0.0.1:8080 PHOTOS=dir node e2e/flow.mjs
//
// Env: BASE_URL (the server), CHROMIUM (default /usr/bin/chromium), PHOTOS (a directory with
// person.jpg, item.jpg and edit.jpg), OUT (screenshots; default target/e2e).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = process.env.BASE_URL ?? 'http://127.0.0.1:8080';
const OUT = process.env.OUT ?? 'target/e2e';
const PHOTOS = process.env.PHOTOS ?? OUT;
const STEP_TIMEOUT_MS = 30_000;

mkdirSync(OUT, { recursive: true });
let shot = 0;
const screenshot = async (page, name) => {
  shot += 1;
  const path = join(OUT, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`  screenshot ${path}`);
};
const step = (text) => console.log(`- ${text}`);
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}
const text = async (page, selector) => (await page.locator(selector).textContent()).trim();
const number = async (page, selector) => Number(await text(page, selector));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // Chromium refuses to start its sandbox as root (CI runs as root).
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
const failures = [];
try {
  await run();
} catch (err) {
  failures.push(err);
} finally {
  await browser.close();
}
if (failures.length) {
  for (const f of failures) console.error(f);
  process.exit(1);
}
console.log('e2e: the whole flow passed');

// A page in a fresh browser context (its own sessionStorage).
async function newPage() {
  const context = await browser.newContext({ viewport: { width: 800, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  // Any script error on the page, any error it logs and any failed request fail the test
  // (the browser's own /favicon.ico aside).
  page.on('pageerror', (err) => failures.push(new Error(`page error: ${err.message}`)));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      failures.push(new Error(`console error: ${msg.text()}`));
    }
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && new URL(res.url()).pathname !== '/favicon.ico') {
      failures.push(new Error(`HTTP ${res.status()} from ${res.request().method()} ${res.url()}`));
    }
  });
  return page;
}

// Logs in as a test user through the page's form (outside Telegram: /dev/init-data).
async function logIn(userId) {
  const page = await newPage();
  await page.goto(`${BASE_URL}/`);
  check((await text(page, '#login-mode')).startsWith('Outside Telegram'), 'the page offers the test login');
  await page.fill('#login-user-id', String(userId));
  await page.fill('#login-first-name', 'Playwright');
  await page.click('#login-button');
  await loggedIn(page, userId);
  return page;
}

// Opens the page as Telegram launches a Mini App: initData in the URL's fragment (signed here
// by /dev/init-data, as Telegram signs it with the bot's token). The page logs in by itself.
async function openInTelegram(userId, startParam) {
  const res = await fetch(`${BASE_URL}/dev/init-data`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: userId, first_name: 'Telegram', start_param: startParam }),
  });
  check(res.ok, `/dev/init-data answered ${res.status}`);
  const { init_data } = await res.json();
  const page = await newPage();
  // Telegram's script (telegram.org) is out of reach here, as on any offline machine: the page
  // must log in without it.
  await page.route('https://telegram.org/**', (route) => route.abort('internetdisconnected'));
  const launch = new URLSearchParams({ tgWebAppData: init_data, tgWebAppVersion: '8.0', tgWebAppPlatform: 'web' });
  await page.goto(`${BASE_URL}/#${launch}`);
  await loggedIn(page, userId);
  check((await text(page, '#login-mode')).startsWith('Inside Telegram'), 'the page logged in with initData from the launch URL');
  return page;
}

async function loggedIn(page, userId) {
  await page.locator('#app').waitFor({ state: 'visible' });
  await page.waitForFunction((id) => document.getElementById('user-id').textContent === String(id), userId);
  await page.waitForFunction(() => document.getElementById('ws-status').textContent === 'open');
}

// Waits for the newest generation card in `list` to reach a final state, and checks it succeeded
// and that its progress arrived over the WebSocket.
async function waitForResult(page, list) {
  const card = page.locator(`#${list} .generation`).first();
  await card.waitFor();
  const id = await card.getAttribute('data-id');
  await page.waitForFunction(
    (sel) => ['succeeded', 'failed', 'canceled'].includes(document.querySelector(sel)?.dataset.status),
    `#${list} .generation[data-id="${id}"]`,
  );
  check((await card.getAttribute('data-status')) === 'succeeded', `generation ${id} succeeded: ${await text(page, `#${list} .generation[data-id="${id}"] .status`)}`);
  const events = await text(page, '#events');
  check(events.includes(`generation.running ${id}`), `generation.running of ${id} came over the socket`);
  check(events.includes(`generation.succeeded ${id}`), `generation.succeeded of ${id} came over the socket`);
  const img = card.locator('img');
  await img.waitFor({ state: 'visible' });
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle());
  return id;
}

async function run() {
  const userId = 1_000_000 + Math.floor(Math.random() * 1_000_000);

  step(`log in as test user ${userId} through /dev/init-data`);
  const page = await logIn(userId);
  check((await number(page, '#balance-credits')) === 0, 'a new user has no credits');
  const freeAtStart = await number(page, '#free-actions-left');
  check(freeAtStart >= 3, `free actions left at start (${freeAtStart})`);
  await screenshot(page, 'logged-in');

  step('upload a person and an item photo');
  await page.setInputFiles('#person-file', join(PHOTOS, 'person.jpg'));
  await page.setInputFiles('#item-file', join(PHOTOS, 'item.jpg'));
  await page.click('#fitting-upload');
  for (const id of ['#person-preview', '#item-preview']) {
    await page.waitForFunction((sel) => {
      const img = document.querySelector(sel);
      return !img.hidden && img.complete && img.naturalWidth > 0;
    }, id);
  }

  step('try it on, watching the WebSocket');
  await page.selectOption('#zone', 'top');
  await page.click('#fitting-generate');
  const fitting = await waitForResult(page, 'fitting-generations');
  console.log(`  fitting ${fitting} succeeded`);
  await page.waitForFunction((n) => Number(document.getElementById('free-actions-left').textContent) === n, freeAtStart - 1);
  await screenshot(page, 'fitting-result');

  step('upload a photo, ask the assistant, run a variant');
  await page.setInputFiles('#edit-file', join(PHOTOS, 'edit.jpg'));
  await page.click('#edit-upload');
  await page.waitForFunction(() => {
    const img = document.getElementById('edit-preview');
    return !img.hidden && img.complete && img.naturalWidth > 0;
  });
  await page.fill('#chat-message', 'Make it look like a warm summer evening');
  await page.click('#chat-send');
  await page.waitForFunction(() => document.querySelectorAll('#chat-variants li').length === 3);
  check((await text(page, '#chat-reply')).length > 0, 'the assistant replied');
  const chatEvents = await text(page, '#events');
  check(chatEvents.includes('chat.delta') && chatEvents.includes('chat.reply'), 'the reply streamed over the socket');
  await screenshot(page, 'chat');
  await page.click('#variant-0');
  const edit = await waitForResult(page, 'editing-generations');
  console.log(`  edit ${edit} succeeded`);
  await screenshot(page, 'edit-result');

  step('buy the 10-credit pack on the sandbox payment page');
  const creditsBefore = await number(page, '#balance-credits');
  await page.selectOption('#product', 'pack_10');
  const popupOpened = page.waitForEvent('popup');
  await page.click('#buy-button');
  const payPage = await popupOpened;
  await payPage.waitForLoadState();
  check(payPage.url().startsWith(`${BASE_URL}/sandbox/payments/`), `the sandbox page opened (${payPage.url()})`);
  await screenshot(payPage, 'sandbox-payment');
  await payPage.getByRole('button', { name: /^Pay / }).click();
  await payPage.getByText('Payment succeeded.').waitFor();
  await payPage.close();
  await page.waitForFunction(() => document.getElementById('payment-status').dataset.status === 'succeeded');
  await page.waitForFunction((n) => Number(document.getElementById('balance-credits').textContent) === n, creditsBefore + 10);
  await screenshot(page, 'bought');

  step('the referral link brings a friend, who opens the Mini App from Telegram');
  const link = await text(page, '#referral-link');
  const code = /[?&]startapp=(ref_[A-Za-z0-9]+)/.exec(link);
  check(code, `the referral link carries a startapp code (${link})`);
  check((await number(page, '#referral-invited')) === 0, 'nobody invited yet');
  const friend = await openInTelegram(userId + 1, code[1]);
  await screenshot(friend, 'friend-in-telegram');
  await friend.context().close();
  await page.reload(); // the token is kept in sessionStorage: no new login
  await page.locator('#app').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.getElementById('referral-invited').textContent === '1');
  // The try-on is listed again, with its result.
  const again = page.locator(`#fitting-generations .generation[data-id="${fitting}"][data-status="succeeded"] img`);
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await again.elementHandle());
  await screenshot(page, 'referral');
}

// Atelier demo Mini App: every call the real Mini App makes, in plain JavaScript.
// The contract is /openapi.yaml (browse it at /docs/). Errors are application/problem+json:
// {type, title, status, detail, code}; `code` is stable, `detail` is for people.
'use strict';

const $ = (id) => document.getElementById(id);

const state = {
  token: null,          // our JWT, from POST /api/v1/auth/telegram
  socket: null,         // the live WebSocket
  generations: new Map(), // generation id → its card element
  fitting: null,        // {person, item}: the uploads of the try-on
  editUpload: null,     // the upload to edit
  chatSession: null,    // the assistant's session id
};

// ---------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? `${problem.code}: ${problem.detail}` : `HTTP ${status}`);
    this.status = status;
    this.code = problem && problem.code;
  }
}

// One API call. `json` is sent as JSON, `form` as multipart; `idempotencyKey` makes a retry safe.
async function api(method, path, { json, form, idempotencyKey } = {}) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form; // the browser sets the multipart boundary itself
  }
  const res = await fetch(path, { method, headers, body });
  const isJson = /json/.test(res.headers.get('Content-Type') || '');
  const data = isJson ? await res.json() : null; // problem+json too
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// A random key for Idempotency-Key / client_request_id (crypto.randomUUID needs https).
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function showError(err) {
  console.error(err);
  $('error').textContent = err.message || String(err);
  $('error').hidden = false;
}

// Runs a click handler with its button disabled, showing any error.
function onClick(id, handler) {
  $(id).addEventListener('click', async () => {
    $(id).disabled = true;
    $('error').hidden = true;
    try {
      await handler();
    } catch (err) {
      showError(err);
    } finally {
      $(id).disabled = false;
    }
  });
}

// ---------------------------------------------------------------------------------------
// 1. Login

// Telegram launches a Mini App with its initData in the URL's fragment (#tgWebAppData=...).
// Only then is Telegram's script loaded (theme, ready(), openLink()): elsewhere the page needs
// nothing from the internet, and inside Telegram it still works when the script cannot load.
function loadTelegramScript() {
  if (window.Telegram || !location.hash.includes('tgWebAppData=')) return Promise.resolve();
  return new Promise((resolve) => {
    const script = document.createElement('script');
    script.src = 'https://telegram.org/js/telegram-web-app.js';
    script.onload = resolve;
    script.onerror = resolve;
    setTimeout(resolve, 3000);
    document.head.append(script);
  });
}

// initData: window.Telegram.WebApp.initData when Telegram's script is there, else the fragment.
function telegramInitData() {
  const webApp = window.Telegram && window.Telegram.WebApp;
  if (webApp && webApp.initData) return webApp.initData;
  return new URLSearchParams(location.hash.slice(1)).get('tgWebAppData');
}

// initData → JWT. POST /api/v1/auth/telegram {init_data} → {access_token, expires_in, user}.
async function logIn(initData) {
  const session = await api('POST', '/api/v1/auth/telegram', { json: { init_data: initData } });
  state.token = session.access_token;
  sessionStorage.setItem('atelier.demo.token', state.token);
  await start();
}

// Outside Telegram: the dev-only signer (404 in production) signs initData for a test user
// with the server's bot token, exactly as Telegram would.
async function logInAsTestUser() {
  const request = {
    user_id: Number($('login-user-id').value),
    first_name: $('login-first-name').value,
  };
  const startParam = $('login-start-param').value.trim();
  if (startParam) request.start_param = startParam;
  const { init_data } = await api('POST', '/dev/init-data', { json: request });
  await logIn(init_data);
}

// ---------------------------------------------------------------------------------------
// 2. Account

// GET /api/v1/me → the profile and the balance in one object; GET /api/v1/balance → the
// balance alone.
async function showMe() {
  const me = await api('GET', '/api/v1/me');
  $('user-name').textContent = [me.first_name, me.last_name].filter(Boolean).join(' ');
  $('user-id').textContent = me.id;
  showBalance(me);
}

async function refreshBalance() {
  showBalance(await api('GET', '/api/v1/balance'));
}

function showBalance(b) {
  $('balance-credits').textContent = b.balance_credits;
  $('free-actions-left').textContent = b.free_actions_left;
  $('free-actions-limit').textContent = b.free_actions_limit;
  $('plan').textContent = b.subscription_plan
    ? `· plan ${b.subscription_plan} until ${new Date(b.subscription_until).toLocaleDateString()}`
    : '';
}

// ---------------------------------------------------------------------------------------
// Live updates: GET /api/v1/ws. Browsers cannot set headers on a WebSocket, so the token goes
// as a subprotocol next to `atelier.v1`. The first message is a snapshot of the active
// generations; then generation.queued / running / progress / succeeded / failed, chat.delta
// and chat.reply. Close code 1008 means the token expired: log in again.

function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/ws`;
  const socket = new WebSocket(url, ['atelier.v1', `bearer.${state.token}`]);
  state.socket = socket;
  socket.onopen = () => {
    $('ws-status').textContent = 'open';
    // Anything that finished while we were away: ask for it once.
    for (const [id, card] of state.generations) {
      if (!card.dataset.final) api('GET', `/api/v1/generations/${id}`).then((r) => showGeneration(r.generation), showError);
    }
  };
  socket.onmessage = (msg) => onEvent(JSON.parse(msg.data));
  socket.onclose = (ev) => {
    $('ws-status').textContent = `closed (${ev.code})`;
    if (state.socket === socket && ev.code !== 1008) setTimeout(connect, 2000);
  };
}

function onEvent(event) {
  const line = event.type.startsWith('generation.')
    ? `${event.type} ${event.generation.id} ${event.generation.status} ${event.generation.progress}%`
    : event.type === 'snapshot' ? `snapshot (${event.generations.length} active)` : event.type;
  $('events').textContent += `${new Date().toLocaleTimeString()} ${line}\n`;
  if (event.type === 'snapshot') {
    event.generations.forEach(showGeneration);
  } else if (event.type.startsWith('generation.')) {
    showGeneration(event.generation);
    if (event.type === 'generation.succeeded' || event.type === 'generation.failed') refreshBalance().catch(showError);
  } else if (event.type === 'chat.delta' && $('chat-reply').dataset.pending) {
    // The reply as it is being written; a retried call (a new attempt) starts over.
    const reply = $('chat-reply');
    if (reply.dataset.attempt !== String(event.attempt)) reply.textContent = '';
    reply.dataset.attempt = event.attempt;
    reply.textContent += event.text;
  }
}

// One card per generation, updated from the POST's answer, the socket or a GET.
function showGeneration(g) {
  let card = state.generations.get(g.id);
  if (!card) {
    const list = $(g.kind === 'fitting' ? 'fitting-generations' : 'editing-generations');
    card = document.createElement('div');
    card.className = 'generation';
    card.innerHTML = '<p class="status"></p><progress max="100"></progress><img alt="result" hidden>';
    list.prepend(card);
    state.generations.set(g.id, card);
  }
  // Events are published independently, so one may overtake another (a `queued` after its
  // `running`): a generation's status never goes back.
  const rank = (status) => ({ queued: 0, running: 1 })[status] ?? 2;
  if (card.dataset.status && rank(g.status) < rank(card.dataset.status)) return;
  card.dataset.id = g.id;
  card.dataset.status = g.status;
  const paid = g.paid_with === 'free_allowance' ? 'a free action' : `${g.credits_spent} credits`;
  let text = `${g.kind} ${g.status} (${paid})`;
  if (g.status === 'failed') text += `: ${g.error_message || g.error_code}`;
  card.querySelector('.status').textContent = text;
  card.querySelector('progress').value = g.status === 'succeeded' ? 100 : g.progress;
  if (['succeeded', 'failed', 'canceled'].includes(g.status)) card.dataset.final = 'yes';
  // The result is a signed link that expires; GET /api/v1/generations/{id} gives a fresh one.
  if (g.result && card.querySelector('img').src !== g.result.url) {
    const img = card.querySelector('img');
    img.src = g.result.url;
    img.hidden = false;
  }
}

// GET /api/v1/generations?limit= → {items (newest first), next_cursor}: the recent ones, so
// that a reload shows them again (each with a fresh signed result link).
async function showRecentGenerations() {
  const { items } = await api('GET', '/api/v1/generations?limit=6');
  items.reverse().forEach(showGeneration); // cards are prepended: oldest first
}

// ---------------------------------------------------------------------------------------
// 3. Try-on

// POST /api/v1/fitting/upload, multipart `person` + `item` → {person, item}, each an upload
// with a signed `url`. Photos are checked from their bytes; errors name the field.
async function uploadFitting() {
  const person = $('person-file').files[0];
  const item = $('item-file').files[0];
  if (!person || !item) throw new Error('choose a person photo and an item photo first');
  const form = new FormData();
  form.append('person', person);
  form.append('item', item);
  state.fitting = await api('POST', '/api/v1/fitting/upload', { form });
  preview('person-preview', state.fitting.person.url);
  preview('item-preview', state.fitting.item.url);
  $('fitting-generate').disabled = false;
}

function preview(id, url) {
  $(id).src = url;
  $(id).hidden = false;
}

// POST /api/v1/fitting/generate → 202 {generation}. Charged once: a free action first, then
// credits; 402 insufficient_credits when neither is left. The key makes a retry safe.
async function generateFitting() {
  if (!state.fitting) throw new Error('upload the photos first');
  const { generation } = await api('POST', '/api/v1/fitting/generate', {
    json: {
      person_upload_id: state.fitting.person.id,
      item_upload_id: state.fitting.item.id,
      zone: $('zone').value,
      client_request_id: newKey(),
    },
  });
  showGeneration(generation);
  await refreshBalance();
}

// ---------------------------------------------------------------------------------------
// 4. Editing with the assistant

// POST /api/v1/editing/upload, multipart `image` → the upload.
async function uploadEditPhoto() {
  const image = $('edit-file').files[0];
  if (!image) throw new Error('choose a photo first');
  const form = new FormData();
  form.append('image', image);
  state.editUpload = await api('POST', '/api/v1/editing/upload', { form });
  state.chatSession = null; // a new photo starts a new conversation
  preview('edit-preview', state.editUpload.url);
  $('chat-send').disabled = false;
}

// POST /api/v1/editing/chat {session_id?, upload_id?, message} → {session_id, reply,
// variants: [3 prompts], usage}. The first message carries the photo and starts a session.
// The reply also streams over the socket as chat.delta while it is written.
async function sendChat() {
  const message = $('chat-message').value.trim();
  if (!message) throw new Error('write a message first');
  const request = { message, client_request_id: newKey() };
  if (state.chatSession) request.session_id = state.chatSession;
  else request.upload_id = state.editUpload.id;
  $('chat-reply').textContent = '';
  delete $('chat-reply').dataset.attempt;
  $('chat-reply').dataset.pending = 'yes';
  let answer;
  try {
    answer = await api('POST', '/api/v1/editing/chat', { json: request });
  } finally {
    delete $('chat-reply').dataset.pending;
  }
  state.chatSession = answer.session_id;
  $('chat-reply').textContent = answer.reply;
  $('chat-message').value = '';
  const list = $('chat-variants');
  list.replaceChildren();
  answer.variants.forEach((prompt, index) => {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.id = `variant-${index}`;
    button.textContent = 'Run';
    item.append(button, ` ${prompt}`);
    list.append(item);
    onClick(button.id, () => runVariant(index));
  });
  await refreshBalance();
}

// POST /api/v1/editing/generate {session_id, variant_index, client_request_id} → 202
// {generation}: one of the assistant's three prompts, run on the session's photo.
async function runVariant(index) {
  const { generation } = await api('POST', '/api/v1/editing/generate', {
    json: { session_id: state.chatSession, variant_index: index, client_request_id: newKey() },
  });
  showGeneration(generation);
  await refreshBalance();
}

// ---------------------------------------------------------------------------------------
// 5. Buying credits

// GET /api/v1/payments/products → {packs, plans}. Prices are kopecks (and `price` as text);
// the client only ever sends a product id.
async function loadProducts() {
  const { packs, plans } = await api('GET', '/api/v1/payments/products');
  $('product').replaceChildren(...[...packs, ...plans].map((p) => {
    const option = document.createElement('option');
    option.value = p.id;
    option.textContent = `${p.title}: ${p.credits} credits for ${p.price} ${p.currency}`;
    return option;
  }));
}

// POST /api/v1/payments/create {product_id, email} → 201 {payment_id, status: "pending",
// confirmation_url}. The payer confirms on that page (YooKassa's, or the sandbox's); the
// credits arrive when the server has verified the payment, so the page polls
// GET /api/v1/payments/{id} until it is final.
async function buy() {
  const payment = await api('POST', '/api/v1/payments/create', {
    json: { product_id: $('product').value, email: $('receipt-email').value },
    idempotencyKey: newKey(),
  });
  const webApp = window.Telegram && window.Telegram.WebApp;
  if (webApp && webApp.openLink) webApp.openLink(payment.confirmation_url);
  else if (!window.open(payment.confirmation_url, '_blank')) {
    $('payment-status').innerHTML = '';
    const link = document.createElement('a');
    link.href = payment.confirmation_url;
    link.target = '_blank';
    link.textContent = 'Open the payment page';
    $('payment-status').append(link);
  }
  $('payment-status').dataset.status = 'pending';
  for (let i = 0; i < 600; i++) { // up to ten minutes
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const { status } = await api('GET', `/api/v1/payments/${payment.payment_id}`);
    if (status !== 'pending') {
      $('payment-status').textContent = `Payment ${status}.`;
      $('payment-status').dataset.status = status;
      await refreshBalance();
      return;
    }
  }
  $('payment-status').textContent = 'Still pending: pay on the opened page.';
}

// ---------------------------------------------------------------------------------------
// 6. Referrals: GET /api/v1/referrals → {code, link, invited, credits_earned, bonus_credits}.

async function showReferrals() {
  const r = await api('GET', '/api/v1/referrals');
  $('referral-link').textContent = r.link;
  $('referral-link').href = r.link;
  $('referral-invited').textContent = r.invited;
  $('referral-earned').textContent = r.credits_earned;
  $('referral-bonus').textContent = r.bonus_credits;
}

// ---------------------------------------------------------------------------------------

async function start() {
  $('login').hidden = true;
  $('app').hidden = false;
  await showMe();
  connect();
  await Promise.all([showRecentGenerations(), loadProducts(), showReferrals()]);
}

async function main() {
  onClick('refresh-balance', refreshBalance);
  onClick('fitting-upload', uploadFitting);
  onClick('fitting-generate', generateFitting);
  onClick('edit-upload', uploadEditPhoto);
  onClick('chat-send', sendChat);
  onClick('buy-button', buy);
  onClick('referral-copy', () => navigator.clipboard.writeText($('referral-link').textContent));
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    $('error').hidden = true;
    logInAsTestUser().catch(showError);
  });

  await loadTelegramScript();
  const webApp = window.Telegram && window.Telegram.WebApp;
  if (webApp) {
    webApp.ready(); // Telegram shows the page
    webApp.expand();
  }
  const initData = telegramInitData();
  if (initData) {
    $('login-mode').textContent = 'Inside Telegram: logging in with its initData…';
    $('login-form').hidden = true;
    await logIn(initData);
    return;
  }
  $('login-mode').textContent = 'Outside Telegram: log in as a test user (development only).';
  $('login-user-id').value = 100000 + Math.floor(Math.random() * 900000);
  // A token from earlier in this tab, while it is still valid.
  const saved = sessionStorage.getItem('atelier.demo.token');
  if (saved) {
    state.token = saved;
    try {
      await start();
    } catch (err) {
      state.token = null;
      sessionStorage.removeItem('atelier.demo.token');
      $('login').hidden = false;
      $('app').hidden = true;
    }
  }
}

main().catch(showError);

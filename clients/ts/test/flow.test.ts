// The typed client against a running `atelier dev` (scripts/client-ts.sh starts one): log in,
// upload, generate with live progress over the WebSocket, and buy a pack through the sandbox
// payment page. BASE_URL names the server; PHOTOS the directory of sample JPEGs.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import WebSocket from "ws";

import {
  ApiError,
  AtelierLive,
  type Generation,
  GenerationTracker,
  type LiveEvent,
  type SocketLike,
  createAtelierClient,
  formData,
  login,
  ok,
} from "../src/index.js";

const BASE_URL = process.env.BASE_URL ?? "http://127.0.0.1:8080";
const PHOTOS = process.env.PHOTOS ?? "../../docs/samples";

async function signedInClient() {
  const userId = 800_000_000 + Math.floor(Math.random() * 100_000_000);
  const anonymous = createAtelierClient({ baseUrl: BASE_URL });
  // Outside production the server signs initData for a test user, as Telegram would.
  const { init_data } = await ok(anonymous.POST("/dev/init-data", { body: { user_id: userId, first_name: "Client" } }));
  let token: string | undefined;
  const client = createAtelierClient({ baseUrl: BASE_URL, token: () => token });
  token = await login(client, init_data);
  return { client, token, userId };
}

async function photo(name: string): Promise<Blob> {
  return new Blob([await readFile(`${PHOTOS}/${name}`)], { type: "image/jpeg" });
}

test("a problem comes back typed, with its stable code", async () => {
  const client = createAtelierClient({ baseUrl: BASE_URL, token: () => "not-a-token" });
  await assert.rejects(ok(client.GET("/api/v1/me")), (e: unknown) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 401);
    assert.equal(e.problem.code, "invalid_token");
    return true;
  });
});

test("log in, upload, try on with live progress, buy a pack", async () => {
  const { client, token } = await signedInClient();
  const me = await ok(client.GET("/api/v1/me"));
  assert.equal(me.first_name, "Client");
  const before = await ok(client.GET("/api/v1/balance"));

  // The socket first: its snapshot, then the generation's events.
  const tracker = new GenerationTracker();
  const seen: LiveEvent[] = [];
  let opened!: () => void;
  const snapshot = new Promise<void>((resolve) => (opened = resolve));
  const waiters: Array<(g: Generation) => void> = [];
  const live = new AtelierLive({
    baseUrl: BASE_URL,
    token: () => token,
    socket: (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike,
    onEvent: (event) => {
      seen.push(event);
      if (event.type === "snapshot") opened();
      const g = tracker.apply(event);
      if (g) for (const w of waiters) w(g);
    },
  });
  try {
    await snapshot;
    const uploads = await ok(
      client.POST("/api/v1/fitting/upload", formData({ person: await photo("person.jpg"), item: await photo("item.jpg") })),
    );
    assert.equal(uploads.person.purpose, "fitting_person");

    const started = await ok(
      client.POST("/api/v1/fitting/generate", {
        params: { header: { "Idempotency-Key": `client-ts-${Date.now()}` } },
        body: { person_upload_id: uploads.person.id, item_upload_id: uploads.item.id, zone: "top" },
      }),
    );
    const id = started.generation.id;
    const done = await new Promise<Generation>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no final event for ${id}`)), 30_000);
      const check = (g: Generation) => {
        if (g.id === id && ["succeeded", "failed", "canceled"].includes(g.status)) {
          clearTimeout(timer);
          resolve(g);
        }
      };
      waiters.push(check);
      const known = tracker.generations.get(id);
      if (known) check(known);
    });
    assert.equal(done.status, "succeeded", JSON.stringify(done));
    assert.ok(done.result?.url.startsWith(BASE_URL), "the result has a signed link");
    const types = seen.filter((e) => "generation" in e && e.generation.id === id).map((e) => e.type);
    assert.ok(types.includes("generation.succeeded"), `events: ${types.join(", ")}`);
    const result = await fetch(done.result!.url);
    assert.equal(result.status, 200);
    assert.equal(result.headers.get("content-type"), "image/jpeg");
  } finally {
    live.close();
  }

  // A pack through the sandbox payment page: the payment succeeds and its credits arrive.
  const catalogue = await ok(client.GET("/api/v1/payments/products"));
  const pack = catalogue.packs[0];
  assert.ok(pack, "the catalogue has a pack");
  const created = await ok(
    client.POST("/api/v1/payments/create", {
      params: { header: { "Idempotency-Key": `client-ts-pay-${Date.now()}` } },
      body: { product_id: pack.id, email: "client@example.com" },
    }),
  );
  assert.ok(created.confirmation_url?.startsWith(`${BASE_URL}/sandbox/payments/`));
  const pressed = await fetch(`${created.confirmation_url}/succeed`, { method: "POST", redirect: "manual" });
  assert.ok(pressed.status < 400, `the sandbox's Pay button answered ${pressed.status}`);
  const payment = await ok(client.GET("/api/v1/payments/{id}", { params: { path: { id: created.payment_id } } }));
  assert.equal(payment.status, "succeeded");
  const after = await ok(client.GET("/api/v1/balance"));
  assert.equal(after.balance_credits, before.balance_credits + pack.credits);
});

// The typed client of the Atelier API for the Mini App.
//
// `createAtelierClient` is openapi-fetch over the types that openapi-typescript generates from
// openapi.yaml (src/schema.d.ts; `npm run generate` rewrites it, CI fails when it drifts), so
// every path, parameter, body and answer is checked by the compiler. `AtelierLive` (live.ts) is
// the WebSocket side: events, reconnects with a fresh token, and the snapshot on every connect.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";
export * from "./live.js";

export type Schemas = components["schemas"];
export type Generation = Schemas["GenerationDto"];
export type Problem = Schemas["Problem"];
export type AtelierClient = Client<paths>;

export interface ClientOptions {
  /** The API's origin, e.g. `https://api.example.com` (paths start with `/api/v1`). */
  baseUrl: string;
  /** The access token to send as `Authorization: Bearer`, read before every request. */
  token?: () => string | undefined;
  /** Another fetch (tests, polyfills). */
  fetch?: typeof globalThis.fetch;
}

export function createAtelierClient(options: ClientOptions): AtelierClient {
  const client = createClient<paths>({
    baseUrl: options.baseUrl,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const auth: Middleware = {
    onRequest({ request }) {
      const token = options.token?.();
      if (token && !request.headers.has("Authorization")) {
        request.headers.set("Authorization", `Bearer ${token}`);
      }
      return request;
    },
  };
  client.use(auth);
  return client;
}

/** An answer that was not 2xx: the API's problem+json, with its stable `code`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(`${status} ${problem.code}: ${problem.detail ?? problem.title}`);
    this.name = "ApiError";
  }
}

/**
 * The data of an openapi-fetch answer, or an `ApiError` carrying its problem:
 * `const me = await ok(client.GET("/api/v1/me"))`.
 */
export async function ok<T, E>(
  call: Promise<{ data?: T; error?: E; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (error !== undefined || data === undefined) {
    throw new ApiError(response.status, (error ?? { code: "empty", title: "no body", status: response.status }) as Problem);
  }
  return data;
}

/** Logs in with the Mini App's `Telegram.WebApp.initData`; returns the access token. */
export async function login(client: AtelierClient, initData: string): Promise<string> {
  const answer = await ok(client.POST("/api/v1/auth/telegram", { body: { init_data: initData } }));
  return answer.access_token;
}

/** Multipart upload bodies: pass a `FormData` straight through (openapi-fetch would JSON it). */
export function formData(fields: Record<string, Blob>): { body: never; bodySerializer: (b: unknown) => FormData } {
  const form = new FormData();
  for (const [name, blob] of Object.entries(fields)) form.append(name, blob, `${name}.jpg`);
  return { body: {} as never, bodySerializer: () => form };
}

// Live progress over `GET /api/v1/ws`: typed events, reconnects with backoff and a fresh token,
// and a tracker that applies the snapshot each connect starts with and never moves a generation
// backwards (events come from several processes and may arrive out of order).
import type { components } from "./schema.js";

type Generation = components["schemas"]["GenerationDto"];
type ChatReply = components["schemas"]["ChatReply"];

export type GenerationEvent =
  | { type: "generation.queued"; generation: Generation; position?: number }
  | { type: "generation.running"; generation: Generation }
  | { type: "generation.progress"; generation: Generation }
  | { type: "generation.succeeded"; generation: Generation; result_url?: string }
  | { type: "generation.failed"; generation: Generation; refunded: boolean };

export type LiveEvent =
  | { type: "snapshot"; generations: Generation[] }
  | GenerationEvent
  | { type: "chat.delta"; session_id: string; attempt: number; text: string }
  | ({ type: "chat.reply" } & ChatReply)
  | { type: "pong" };

/** The part of the WebSocket interface we use: the browser's, or the `ws` package's in Node. */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(code?: number, reason?: string): void;
  send(data: string): void;
}
export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

export interface LiveOptions {
  /** The API's origin (`https://…`); the socket is `wss://…/api/v1/ws`. */
  baseUrl: string;
  /** The access token for each (re)connect: return a fresh one after it expired. */
  token: () => string | Promise<string>;
  onEvent: (event: LiveEvent) => void;
  /** Called with the close code and reason; `final` when no reconnect follows. */
  onClose?: (code: number, reason: string, final: boolean) => void;
  /** Defaults to the global `WebSocket` (browsers, Telegram's webview). */
  socket?: SocketFactory;
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** One live connection that reconnects until `close()`, or until the account is blocked. */
export class AtelierLive {
  private socket: SocketLike | undefined;
  private closed = false;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: LiveOptions) {
    void this.connect();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.close(1000, "bye");
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const token = await this.options.token();
    const url = `${this.options.baseUrl.replace(/^http/, "ws")}/api/v1/ws`;
    const factory: SocketFactory =
      this.options.socket ??
      ((u, protocols) => new (globalThis as unknown as { WebSocket: new (u: string, p: string[]) => SocketLike }).WebSocket(u, protocols));
    // The token travels as a subprotocol, so that it is not written to access logs as a query would be.
    const socket = factory(url, [`bearer.${token}`]);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
    };
    socket.onmessage = (ev) => {
      const text = typeof ev.data === "string" ? ev.data : String(ev.data);
      try {
        this.options.onEvent(JSON.parse(text) as LiveEvent);
      } catch {
        // Not JSON: not from us; ignore it.
      }
    };
    socket.onerror = () => {};
    socket.onclose = (ev) => {
      // 1008 "account blocked" is final; 1008 "token expired" reconnects with a fresh token.
      const final = this.closed || (ev.code === 1008 && ev.reason.includes("blocked"));
      this.options.onClose?.(ev.code, ev.reason, final);
      if (!final) this.schedule();
    };
  }

  private schedule(): void {
    const min = this.options.minDelayMs ?? 500;
    const max = this.options.maxDelayMs ?? 30_000;
    const delay = Math.min(max, min * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.timer = setTimeout(() => void this.connect(), delay);
  }
}

const RANK: Record<string, number> = { queued: 0, running: 1, succeeded: 2, failed: 2, canceled: 2 };

/** The user's generations as the events tell them, never moving a status or progress backwards. */
export class GenerationTracker {
  readonly generations = new Map<string, Generation>();

  /** Applies an event; returns the generation it changed, if any. */
  apply(event: LiveEvent): Generation | undefined {
    if (event.type === "snapshot") {
      for (const g of event.generations) this.merge(g);
      return undefined;
    }
    if (event.type.startsWith("generation.") && "generation" in event) return this.merge(event.generation);
    return undefined;
  }

  private merge(next: Generation): Generation {
    const prev = this.generations.get(next.id);
    const older =
      prev !== undefined &&
      ((RANK[prev.status] ?? 0) > (RANK[next.status] ?? 0) ||
        (prev.status === next.status && prev.progress > next.progress));
    const kept = older ? prev : next;
    this.generations.set(next.id, kept);
    return kept;
  }
}

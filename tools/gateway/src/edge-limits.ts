import { EnvReader } from '@smart-router/config';

/**
 * SPEC 10.2 "Rate and connection limits at the edge": the values the local
 * gateway enforces. The nginx routers (docker/nginx/nginx.conf,
 * k8s/base/nginx-router/nginx.conf) spell the same defaults out in
 * `limit_req_zone` / `limit_conn`, and tools/deploy checks all three agree.
 */
export interface EdgeLimits {
  /** Requests per second per client address, on every routed request and upgrade (EDGE_RATE_PER_SECOND). */
  ratePerSecond: number;
  /** Requests above the rate an address may send at once (EDGE_RATE_BURST; nginx `burst=… nodelay`). */
  rateBurst: number;
  /** Open media WebSockets (`/ws/pod/…`) per client address (EDGE_MEDIA_SOCKETS_PER_ADDRESS). */
  mediaSocketsPerAddress: number;
  /**
   * Open media WebSockets in all (EDGE_MEDIA_SOCKETS_TOTAL). Each proxied socket
   * holds two descriptors for up to a call's length; capping them together keeps
   * room for webhooks and the API however many sockets are opened.
   */
  mediaSocketsTotal: number;
}

/** Defaults no legitimate burst reaches (SPEC 10.2: at least 200/s with bursts of 500, 200 sockets per address). */
export const DEFAULT_EDGE_LIMITS: Readonly<EdgeLimits> = {
  ratePerSecond: 200,
  rateBurst: 500,
  mediaSocketsPerAddress: 200,
  mediaSocketsTotal: 4000,
};

/** The one answer for every edge-limit refusal, as nginx's `@rate_limited` page. */
export const RATE_LIMITED = { status: 429, code: 'RATE_LIMITED', message: 'rate limited' } as const;

export function readEdgeLimits(env: EnvReader): EdgeLimits {
  return {
    ratePerSecond: env.int('EDGE_RATE_PER_SECOND', DEFAULT_EDGE_LIMITS.ratePerSecond, { min: 1, max: 1_000_000 }),
    rateBurst: env.int('EDGE_RATE_BURST', DEFAULT_EDGE_LIMITS.rateBurst, { min: 0, max: 1_000_000 }),
    mediaSocketsPerAddress: env.int('EDGE_MEDIA_SOCKETS_PER_ADDRESS', DEFAULT_EDGE_LIMITS.mediaSocketsPerAddress, { min: 1, max: 1_000_000 }),
    mediaSocketsTotal: env.int('EDGE_MEDIA_SOCKETS_TOTAL', DEFAULT_EDGE_LIMITS.mediaSocketsTotal, { min: 1, max: 1_000_000 }),
  };
}

/**
 * Addresses tracked at once. Like an nginx zone that is full, the least
 * recently seen address is forgotten first; a forgotten address starts again
 * with a full bucket, which is what it would have after a second of silence.
 */
const TRACKED_ADDRESSES = 65_536;

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per client address, the same admission as nginx's
 * `limit_req … burst=B nodelay`: B + 1 requests pass at once, then one per
 * 1/rate seconds.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly capacity: number;

  constructor(private readonly ratePerSecond: number, burst: number, private readonly now: () => number = () => performance.now(), private readonly maxTracked = TRACKED_ADDRESSES) {
    this.capacity = burst + 1;
  }

  /** Takes one token for `address`; false = over the limit (nothing else changes). */
  admit(address: string): boolean {
    const now = this.now();
    const known = this.buckets.get(address);
    const bucket = known ? { tokens: Math.min(this.capacity, known.tokens + ((now - known.at) / 1000) * this.ratePerSecond), at: now } : { tokens: this.capacity, at: now };
    // Re-inserted at the end: Map order is then least recently seen first.
    this.buckets.delete(address);
    if (this.buckets.size >= this.maxTracked) this.buckets.delete(this.buckets.keys().next().value as string);
    const admitted = bucket.tokens >= 1;
    if (admitted) bucket.tokens -= 1;
    this.buckets.set(address, bucket);
    return admitted;
  }

  get tracked(): number {
    return this.buckets.size;
  }
}

/** Open media sockets per address and in all (nginx: two `limit_conn` zones on the /ws/pod location). */
export class MediaSocketBudget {
  private readonly perAddress = new Map<string, number>();
  private total = 0;

  constructor(private readonly limits: Pick<EdgeLimits, 'mediaSocketsPerAddress' | 'mediaSocketsTotal'>) {}

  /** Reserves a socket for `address`: a release function to call once when it closes, or null when refused. */
  open(address: string): (() => void) | null {
    const held = this.perAddress.get(address) ?? 0;
    if (held >= this.limits.mediaSocketsPerAddress || this.total >= this.limits.mediaSocketsTotal) return null;
    this.perAddress.set(address, held + 1);
    this.total += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total -= 1;
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    };
  }

  /** Media sockets open now. */
  get openSockets(): number {
    return this.total;
  }
}

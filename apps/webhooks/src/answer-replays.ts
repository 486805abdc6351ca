import { createHash, randomUUID } from 'node:crypto';
import { ProviderDocument, ProviderName } from '@smart-router/providers';
import { WebhookReplayScripts } from '@smart-router/redis-scripts';

/** How a signed answer webhook stands against the ones seen before (SPEC 10.2). */
export type ReplayCheck =
  /** First of its kind: answer it, then `record` the answer under `claim`. */
  | { kind: 'first'; claim: ReplayClaim }
  /** Seen before and answered: send exactly this again. */
  | { kind: 'answered'; document: ProviderDocument }
  /** Seen before, its answer never recorded (the first request died, or its record failed): allocate nothing. */
  | { kind: 'unresolved' }
  /** Seen before and still being answered, but too many copies already wait here: retry later (503, Retry-After). */
  | { kind: 'busy' };

export interface ReplayClaim {
  digests: string[];
  marker: string;
}

/** Beyond the first request's own wait: its Redis round trips, even slow ones (each bounded by REDIS_COMMAND_TIMEOUT_MS). */
const ANSWER_SLACK_MS = 5000;
/** How often a copy of a request still being answered looks for that answer: first after this, then backing off. */
const PENDING_POLL_MS = 50;
const PENDING_POLL_MAX_MS = 400;
/**
 * Copies of requests still being answered that may wait at once in this
 * process: each polls Redis, so beyond this a copy is answered 503 with
 * Retry-After at once (REPLAY_PENDING) instead of adding to the load; the
 * provider's next retry finds the first answer recorded.
 */
export const MAX_REPLAY_WAITERS = 64;

interface PendingClaim {
  pending: true;
  claim: string;
  /** Past this (ms since the epoch), the first request is not answering any more. */
  until: number;
}

/**
 * The memory of signed answer webhooks: a Plivo V3 nonce or a Twilio
 * idempotency token (or signature) seen within TOMBSTONE_TTL_SECONDS is
 * answered with the very document the first one got, or its refusal, and
 * never allocates again, even after the call was released and its tombstone
 * expired. The first request claims its identities atomically before it
 * allocates (so two copies never both allocate) and records its document
 * after; a copy arriving in between waits for that record, as a provider
 * retry must get the answer the first request is still working out.
 * Identities are stored as SHA-256 digests: fixed-size keys, whatever was sent.
 */
export class AnswerReplays {
  constructor(
    private readonly scripts: WebhookReplayScripts,
    /** TOMBSTONE_TTL_SECONDS; 0 = remember nothing. */
    private readonly ttlSeconds: number,
    /** WEBHOOK_WAIT_MS: how long the first request may take to decide. */
    private readonly waitMs: number,
    private readonly maxWaiters = MAX_REPLAY_WAITERS,
  ) {}

  /** Copies waiting for a first answer right now. */
  private waiting = 0;

  get enabled(): boolean {
    return this.ttlSeconds > 0;
  }

  /** Claims the request or finds what its first copy got. Redis errors propagate (the caller fails closed). */
  async check(provider: ProviderName, identities: readonly string[]): Promise<ReplayCheck> {
    const digests = identities.slice(0, 2).map((identity) => createHash('sha256').update(`${provider}:${identity}`, 'utf8').digest('hex'));
    const marker = JSON.stringify({ pending: true, claim: randomUUID(), until: Date.now() + this.waitMs + ANSWER_SLACK_MS } satisfies PendingClaim);
    // Bounded in time (this copy's own wait and slack, and the first one's `until`) and in number (maxWaiters).
    const giveUpAt = Date.now() + this.waitMs + ANSWER_SLACK_MS;
    let slot = false;
    let pollMs = PENDING_POLL_MS;
    try {
      for (;;) {
        const result = await this.scripts.claim(digests, marker, this.ttlSeconds);
        if (result.claimed) return { kind: 'first', claim: { digests, marker } };
        const record = parseRecord(result.record);
        if (record && 'body' in record) return { kind: 'answered', document: record };
        // Still being answered: poll (rare, bounded), the first copy records within its own wait.
        if (!record || Date.now() >= Math.min(record.until, giveUpAt)) return { kind: 'unresolved' };
        if (!slot) {
          if (this.waiting >= this.maxWaiters) return { kind: 'busy' };
          this.waiting += 1;
          slot = true;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(0, giveUpAt - Date.now()))));
        pollMs = Math.min(pollMs * 2, PENDING_POLL_MAX_MS);
      }
    } finally {
      if (slot) this.waiting -= 1;
    }
  }

  /** Stores the first request's answer for its replays; false when its claim was gone (expired). */
  async record(claim: ReplayClaim, document: ProviderDocument): Promise<boolean> {
    const answer: ProviderDocument = { status: document.status, contentType: document.contentType, body: document.body };
    return (await this.scripts.record(claim.digests, claim.marker, JSON.stringify(answer))) > 0;
  }
}

function parseRecord(text: string): ProviderDocument | PendingClaim | null {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    if (value.pending === true && typeof value.until === 'number') return value as unknown as PendingClaim;
    if (typeof value.status === 'number' && typeof value.contentType === 'string' && typeof value.body === 'string') {
      return { status: value.status, contentType: value.contentType, body: value.body };
    }
  } catch {
    // fall through: an unreadable record answers nothing
  }
  return null;
}

import { randomUUID } from 'node:crypto';
import { ScriptCode, TierDocument, toTierDocument } from '@smart-router/allocation';
import { DEFAULT_CHAIN, TierSpec, parseTierConfig } from '@smart-router/config';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';

/**
 * Property test of the pool scripts: seeded random sequences of every
 * operation the apps perform (allocate, release, drain, pod observations,
 * deletes, restarts, zombie sweeps, rebalances), each followed by
 * checkInvariants AND an independent reading of Redis against a model the
 * test keeps of which call is on which pod. A failure names the seed and the
 * step; the seed list below replays it exactly.
 */

const SEEDS = Array.from({ length: 20 }, (_, index) => (Math.imul(index + 1, 0x9e3779b1) >>> 0));
const STEPS = 200;

/** mulberry32: tiny, fast, good enough to explore; deterministic per seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TIER_CONFIG = JSON.stringify({
  gold: { type: 'exclusive', target: 2 },
  standard: { type: 'exclusive', target: 2 },
  overflow: { type: 'exclusive', target: 1 },
  basic: { type: 'shared', target: 2, max_concurrent: 3 },
  merchant_acme: { type: 'exclusive', target: 1, dedicated: true },
});
const EXTRA_TIER = 'standard';
const INITIAL_PODS = Array.from({ length: 8 }, (_, index) => `voice-agent-${index}`);
/** Names that may appear later (scale-up) besides the initial ones. */
const ALL_PODS = [...INITIAL_PODS, 'voice-agent-8', 'voice-agent-9'];

interface MerchantConfig {
  tier?: string;
  pool?: string;
  fallback?: string[];
}

/** Merchant ids used by the test; '' = no merchant, `unconfigured` has no config entry. */
const MERCHANTS: Record<string, MerchantConfig | null> = {
  '': null,
  unconfigured: null,
  gold: { tier: 'gold' },
  standard: { tier: 'standard' },
  basic: { tier: 'basic' },
  acme: { tier: 'dedicated', pool: 'merchant_acme' },
  'gold-with-narrow-fallback': { tier: 'gold', fallback: ['basic', 'overflow'] },
  'basic-naming-gold-as-pool': { tier: 'basic', pool: 'gold' },
  'fallback-naming-a-dedicated-pool': { fallback: ['merchant_acme', 'standard'] },
  'acme-with-fallback': { pool: 'merchant_acme', fallback: ['gold'] },
};

/** The chain a call walks, written from SPEC section 1, independently of the script. */
/** SPEC 6.1 as the scripts apply it: the StatefulSet ordinal fills tiers in config order up to their targets. */
function ordinalTierOf(name: string, document: { order: string[]; tiers: Record<string, { target: number }>; extra: string }): string {
  const ordinal = Number(/-(\d+)$/.exec(name)![1]);
  let upto = 0;
  for (const tier of document.order) {
    upto += document.tiers[tier].target;
    if (ordinal < upto) return tier;
  }
  return document.extra;
}

function expectedChain(merchant: string, tiers: Record<string, TierSpec>): string[] {
  const config = MERCHANTS[merchant];
  const chain: string[] = [];
  const push = (tier: string) => {
    if (!chain.includes(tier)) chain.push(tier);
  };
  if (config?.pool && tiers[config.pool]?.dedicated) push(config.pool);
  let list: string[];
  if (config?.fallback && config.fallback.length > 0) list = config.fallback;
  else if (config?.tier === 'gold' || config?.tier === 'dedicated') list = ['gold', 'standard', 'overflow', 'basic'];
  else if (config?.tier === 'basic') list = ['basic', 'standard', 'overflow'];
  else list = DEFAULT_CHAIN;
  for (const tier of list) if (!tiers[tier]?.dedicated) push(tier);
  return chain;
}

interface PodView {
  hash: Record<string, string>;
  tier: string | null;
  draining: boolean;
  drainingTtl: number;
  lease: string | null;
  calls: string[];
  hasMetadata: boolean;
}

interface Snapshot {
  pods: Map<string, PodView>;
  index: Set<string>;
  assigned: Map<string, Set<string>>;
  /** Exclusive tiers score 0. */
  available: Map<string, Map<string, number>>;
  callRecords: Map<string, Record<string, string>>;
  active: Map<string, string | null>;
  streamLength: number;
}

interface ModelCall {
  pod: string;
  uid: string;
  tier: string;
  allocationId: number | null;
  /** The merchant_id it was allocated for (a repeat answers it back as existingMerchant). */
  merchant: string;
}

class Model {
  /** Existing pods and their UID. */
  readonly pods = new Map<string, string>();
  readonly calls = new Map<string, ModelCall>();
  readonly sids: string[] = [];
  readonly tombstoned = new Set<string>();

  callsOn(pod: string): string[] {
    return [...this.calls].filter(([, call]) => call.pod === pod).map(([sid]) => sid).sort();
  }

  endCallsOn(pod: string): number {
    const sids = this.callsOn(pod);
    for (const sid of sids) this.calls.delete(sid);
    return sids.length;
  }
}

async function readSnapshot(pool: PoolFixture, document: TierDocument, model: Model): Promise<Snapshot> {
  const { redis, keys } = pool;
  const tx = redis.multi();
  for (const name of ALL_PODS) {
    tx.hgetall(keys.pod(name)).get(keys.podTier(name)).exists(keys.podDraining(name)).pttl(keys.podDraining(name))
      .get(keys.lease(name)).smembers(keys.podCalls(name)).hexists(keys.podMetadata(), name);
  }
  tx.smembers(keys.pods());
  for (const tier of document.order) {
    tx.smembers(keys.poolAssigned(tier));
    if (document.tiers[tier].type === 'shared') tx.zrange(keys.poolAvailable(tier), 0, -1, 'WITHSCORES');
    else tx.smembers(keys.poolAvailable(tier));
  }
  for (const sid of model.sids) tx.hgetall(keys.call(sid)).zscore(keys.activeCalls(), sid);
  tx.xlen(keys.callStream());
  const replies = (await tx.exec()) ?? [];
  let cursor = 0;
  const next = <T>(): T => {
    const [error, value] = replies[cursor++];
    if (error) throw error;
    return value as T;
  };
  const pods = new Map<string, PodView>();
  for (const name of ALL_PODS) {
    pods.set(name, {
      hash: next<Record<string, string>>(), tier: next<string | null>(), draining: next<number>() === 1, drainingTtl: next<number>(),
      lease: next<string | null>(), calls: next<string[]>().sort(), hasMetadata: next<number>() === 1,
    });
  }
  const index = new Set(next<string[]>());
  const assigned = new Map<string, Set<string>>();
  const available = new Map<string, Map<string, number>>();
  for (const tier of document.order) {
    assigned.set(tier, new Set(next<string[]>()));
    const members = next<string[]>();
    const scores = new Map<string, number>();
    if (document.tiers[tier].type === 'shared') for (let i = 0; i < members.length; i += 2) scores.set(members[i], Number(members[i + 1]));
    else for (const member of members) scores.set(member, 0);
    available.set(tier, scores);
  }
  const callRecords = new Map<string, Record<string, string>>();
  const active = new Map<string, string | null>();
  for (const sid of model.sids) {
    const record = next<Record<string, string>>();
    if (Object.keys(record).length > 0) callRecords.set(sid, record);
    active.set(sid, next<string | null>());
  }
  return { pods, index, assigned, available, callRecords, active, streamLength: next<number>() };
}

const allocatable = (view: PodView) => view.hash.ready === '1' && view.hash.terminating !== '1' && !view.draining;

/** Independent reading of SPEC section 7 (and the model), returning every breach found. */
function breaches(snapshot: Snapshot, document: TierDocument, model: Model): string[] {
  const found: string[] = [];
  const fail = (detail: string) => found.push(detail);
  const tierOf = new Map<string, string[]>();
  for (const [tier, members] of snapshot.assigned) {
    for (const name of members) tierOf.set(name, [...(tierOf.get(name) ?? []), tier]);
  }
  const existing = [...model.pods.keys()].sort();
  if (JSON.stringify([...snapshot.index].sort()) !== JSON.stringify(existing)) fail(`pod index ${[...snapshot.index].sort()} != pods ${existing}`);

  for (const name of ALL_PODS) {
    const view = snapshot.pods.get(name)!;
    const uid = model.pods.get(name);
    if (uid === undefined) {
      const leftovers = [
        view.tier && 'tier', view.draining && 'draining', view.lease && 'lease', view.calls.length > 0 && 'calls',
        view.hasMetadata && 'metadata', tierOf.has(name) && 'assigned',
        [...snapshot.available.values()].some((members) => members.has(name)) && 'available',
        Object.keys(view.hash).some((field) => field !== 'deleted_at' && field !== 'updated_at') && 'pod record',
      ].filter(Boolean);
      if (leftovers.length > 0) fail(`${name} is gone but keeps ${leftovers.join(', ')}`);
      continue;
    }
    if (view.hash.uid !== uid) fail(`${name} uid ${view.hash.uid} != ${uid}`);
    const tiers = tierOf.get(name) ?? [];
    if (tiers.length !== 1) fail(`${name} assigned to [${tiers}]`);
    if (!view.tier || view.tier !== tiers[0] || view.hash.tier !== view.tier) fail(`${name} tier key ${view.tier}, hash ${view.hash.tier}, sets [${tiers}]`);
    if (view.draining && view.drainingTtl !== -1) fail(`${name} drain flag has a TTL (${view.drainingTtl} ms)`);
    const modelCalls = model.callsOn(name);
    if (JSON.stringify(view.calls) !== JSON.stringify(modelCalls)) fail(`${name} lists calls [${view.calls}] but the model has [${modelCalls}]`);
    const expectedStatus = view.calls.length > 0 ? 'allocated' : 'available';
    if (view.hash.status !== expectedStatus) fail(`${name} status ${view.hash.status} with ${view.calls.length} call(s)`);
    const spec = view.tier ? document.tiers[view.tier] : undefined;
    if (!spec) continue;
    const score = snapshot.available.get(view.tier!)!.get(name);
    if (spec.type === 'shared') {
      if (view.calls.length > spec.max_concurrent) fail(`${name} holds ${view.calls.length} calls > max ${spec.max_concurrent}`);
      if (allocatable(view) && score !== view.calls.length) fail(`${name} shared score ${score} != ${view.calls.length} live calls`);
      if (!allocatable(view) && score !== undefined) fail(`${name} not allocatable but in the shared pool`);
      if (view.lease) fail(`${name} is shared but leased to ${view.lease}`);
    } else {
      if (view.calls.length > 1) fail(`exclusive ${name} holds ${view.calls.length} calls`);
      if (view.calls.length === 1) {
        if (score !== undefined) fail(`exclusive ${name} holds a call and is available`);
        if (view.lease !== view.calls[0] || view.hash.allocated_call_sid !== view.calls[0]) {
          fail(`exclusive ${name} call ${view.calls[0]} but lease ${view.lease}, allocated_call_sid ${view.hash.allocated_call_sid}`);
        }
      } else {
        if (view.lease || view.hash.allocated_call_sid) fail(`idle ${name} keeps lease ${view.lease} / allocated_call_sid ${view.hash.allocated_call_sid}`);
        if (allocatable(view) !== (score !== undefined)) fail(`idle ${name} allocatable=${allocatable(view)} but available=${score !== undefined}`);
      }
    }
  }
  for (const [tier, members] of snapshot.available) {
    for (const name of members.keys()) {
      if (!snapshot.assigned.get(tier)!.has(name)) fail(`${name} available in ${tier} but not assigned to it`);
      const view = snapshot.pods.get(name);
      if (!view || !allocatable(view)) fail(`${name} available in ${tier} while not ready, terminating or draining`);
    }
  }
  for (const sid of model.sids) {
    const call = model.calls.get(sid);
    const record = snapshot.callRecords.get(sid);
    if (!call) {
      if (record) fail(`call ${sid} ended but its record remains (${JSON.stringify(record)})`);
      continue;
    }
    if (!record) fail(`live call ${sid} has no record`);
    else if (record.pod_name !== call.pod || record.pod_uid !== call.uid || record.tier !== call.tier) {
      fail(`call ${sid} record ${record.pod_name}/${record.pod_uid}/${record.tier} != model ${call.pod}/${call.uid}/${call.tier}`);
    }
    if (model.pods.get(call.pod) !== call.uid) fail(`call ${sid} points at ${call.pod} ${call.uid}, which is not the live incarnation`);
    if (snapshot.active.get(sid) === null) fail(`live call ${sid} missing from calls:active`);
  }
  return found;
}

describe('pool scripts keep every invariant under random operation sequences', () => {
  it.each(SEEDS)('seed %i', async (seed) => {
    const random = mulberry32(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const chance = (probability: number) => random() < probability;

    const tiers = parseTierConfig(TIER_CONFIG);
    let document = toTierDocument(tiers, EXTRA_TIER);
    const pool = await createPoolFixture({ url: sharedRedisUrl(), tierConfig: TIER_CONFIG, pods: INITIAL_PODS, extraTier: EXTRA_TIER });
    const { redis, keys, scripts } = pool;
    const model = new Model();
    for (const [name, uid] of pool.uids) model.pods.set(name, uid);
    for (const [merchant, config] of Object.entries(MERCHANTS)) if (config) await redis.hset(keys.merchantConfig(), merchant, JSON.stringify(config));

    const log: string[] = [];
    let step = 0;
    let callCounter = 0;
    let lastAllocationId = 0;
    const newSid = () => {
      const sid = `CA${seed.toString(36)}n${++callCounter}`;
      model.sids.push(sid);
      return sid;
    };
    const observe = (name: string, uid: string, ready = true, terminating = false) =>
      ({ name, uid, ready, terminating, metadata: { labels: { app: 'voice-agent' } }, pinnedTier: '', term: null });

    try {
      let snapshot = await readSnapshot(pool, document, model);
      expect(breaches(snapshot, document, model)).toEqual([]);

      for (step = 1; step <= STEPS; step++) {
        const roll = random();
        let events = 0;

        if (roll < 0.3) {
          // allocate: a new call_sid, or a repeat of a live or ended one
          const sid = chance(0.3) && model.sids.length > 0 ? pick(model.sids) : newSid();
          const merchant = pick(Object.keys(MERCHANTS));
          const refuseTombstoned = chance(0.2);
          log.push(`allocate ${sid} merchant=${merchant || "''"} refuse=${refuseTombstoned}`);
          const result = await scripts.allocate({ callSid: sid, merchantId: merchant, provider: 'twilio', metadata: '{}', refuseTombstoned });
          const live = model.calls.get(sid);
          if (live) {
            // Idempotent: the same pod, whatever the merchant says this time.
            expect(result).toEqual({ ok: true, allocation: { podName: live.pod, podUid: live.uid, tier: live.tier, sourcePool: `pool:${live.tier}`, wasExisting: true, allocationId: live.allocationId, state: 'pending', agentVersion: '' }, existingMerchant: live.merchant });
          } else if (refuseTombstoned && model.tombstoned.has(sid)) {
            expect(result).toEqual({ ok: false, code: ScriptCode.Tombstoned });
          } else {
            const chain = expectedChain(merchant, document.tiers);
            const candidates = new Map<string, string[]>();
            for (const tier of chain) {
              const spec = document.tiers[tier];
              if (!spec) continue;
              candidates.set(tier, [...snapshot.pods].filter(([name, view]) =>
                model.pods.has(name) && view.tier === tier && allocatable(view) && !(spec.type === 'exclusive' && view.lease) &&
                view.calls.length < (spec.type === 'shared' ? spec.max_concurrent : 1)).map(([name]) => name));
            }
            const firstTier = chain.find((tier) => (candidates.get(tier) ?? []).length > 0);
            if (!firstTier) {
              expect(result).toEqual({ ok: false, code: ScriptCode.NoPod });
            } else {
              if (!result.ok) throw new Error(`allocation refused (${result.code}) although ${firstTier} has ${candidates.get(firstTier)}`);
              const { podName, tier, podUid, wasExisting, allocationId } = result.allocation;
              // Fencing tokens are strictly increasing across every allocation.
              expect(allocationId).toBeGreaterThan(lastAllocationId);
              lastAllocationId = allocationId!;
              expect({ tier, wasExisting }).toEqual({ tier: firstTier, wasExisting: false });
              expect(candidates.get(tier)).toContain(podName);
              if (tier === 'gold') expect(chain).toContain('gold');
              if (document.tiers[tier].dedicated) expect(MERCHANTS[merchant]?.pool).toBe(tier);
              if (document.tiers[tier].type === 'shared') {
                const loads = candidates.get(tier)!.map((name) => snapshot.pods.get(name)!.calls.length);
                expect(snapshot.pods.get(podName)!.calls.length).toBe(Math.min(...loads));
              }
              expect(podUid).toBe(model.pods.get(podName));
              model.calls.set(sid, { pod: podName, uid: podUid, tier, allocationId, merchant });
              events = 1;
            }
          }
        } else if (roll < 0.48) {
          // release: a live call, or an unknown / already ended one
          const liveSids = [...model.calls.keys()];
          const sid = chance(0.7) && liveSids.length > 0 ? pick(liveSids) : chance(0.5) && model.sids.length > 0 ? pick(model.sids) : newSid();
          const reaped = chance(0.2);
          log.push(`release ${sid}${reaped ? ' (reaped)' : ''}`);
          const result = await scripts.release(sid, pick(['', 'hangup', 'completed']), reaped ? 'call.reaped' : 'call.released');
          const call = model.calls.get(sid);
          if (call) {
            const wasDraining = snapshot.pods.get(call.pod)!.draining;
            expect(result).toEqual({ ok: true, release: { podName: call.pod, releasedToPool: `pool:${call.tier}`, wasDraining } });
            model.calls.delete(sid);
            model.tombstoned.add(sid);
            events = 1;
          } else {
            expect(result).toEqual({ ok: false, code: ScriptCode.NotFound });
          }
        } else if (roll < 0.56) {
          // drain / undrain, unknown pods included
          const name = pick(ALL_PODS);
          const draining = chance(0.6);
          log.push(`${draining ? 'drain' : 'undrain'} ${name}`);
          const result = await scripts.setDrain(name, draining);
          if (model.pods.has(name)) {
            expect(result).toEqual({ activeCalls: model.callsOn(name).length, tier: snapshot.pods.get(name)!.tier });
            // pod.drained / pod.undrained only when the mark changes.
            if (snapshot.pods.get(name)!.draining !== draining) events = 1;
          } else expect(result).toBeNull();
        } else if (roll < 0.66) {
          // a watch event for a known pod: ready / not ready / terminating
          const name = pick([...model.pods.keys()].sort());
          if (!name) continue;
          const ready = chance(0.7);
          const terminating = chance(0.15);
          log.push(`upsert ${name} ready=${ready} terminating=${terminating}`);
          expect(await scripts.upsertPod(observe(name, model.pods.get(name)!, ready, terminating))).toEqual({ tier: snapshot.pods.get(name)!.tier, orphaned: 0 });
        } else if (roll < 0.71) {
          // StatefulSet restart: same name, new UID
          const name = pick([...model.pods.keys()].sort());
          if (!name) continue;
          const uid = randomUUID();
          log.push(`restart ${name} -> ${uid}`);
          const orphaned = model.endCallsOn(name);
          expect(await scripts.upsertPod(observe(name, uid, chance(0.5)))).toEqual({ tier: snapshot.pods.get(name)!.tier, orphaned });
          model.pods.set(name, uid);
          events = orphaned;
        } else if (roll < 0.75) {
          // pod deleted; sometimes a late delete for an older incarnation, or for a pod already gone
          const name = pick(ALL_PODS);
          const uid = model.pods.get(name);
          const stale = chance(0.15);
          const uidArgument = stale ? randomUUID() : chance(0.5) ? (uid ?? '') : '';
          log.push(`removePod ${name} uid=${uidArgument || "''"}`);
          const result = await scripts.removePod(name, uidArgument, null);
          if (uid === undefined || stale) {
            expect(result).toBe(0);
          } else {
            const orphaned = model.endCallsOn(name);
            expect(result).toEqual({ orphaned });
            model.pods.delete(name);
            events = orphaned;
          }
        } else if (roll < 0.8) {
          // a pod (re)appears: its tier follows its ordinal alone, whatever else exists
          const absent = ALL_PODS.filter((name) => !model.pods.has(name));
          if (absent.length === 0) continue;
          const name = pick(absent);
          const uid = randomUUID();
          const tier = ordinalTierOf(name, document);
          log.push(`create ${name} ${uid}`);
          expect(await scripts.upsertPod(observe(name, uid, chance(0.8)))).toEqual({ tier, orphaned: 0 });
          model.pods.set(name, uid);
        } else if (roll < 0.86) {
          // zombie sweep on a consistent pod finds nothing to correct
          const name = pick(ALL_PODS);
          log.push(`sweepPod ${name}`);
          expect(await scripts.sweepPod(name)).toBe(0);
        } else if (roll < 0.9) {
          // a call record expires (TTL) without a release; the sweep repairs the pod
          const liveSids = [...model.calls.keys()];
          if (liveSids.length === 0) continue;
          const sid = pick(liveSids);
          const { pod } = model.calls.get(sid)!;
          log.push(`expire ${sid} on ${pod}, sweepPod ${pod}`);
          await redis.del(keys.call(sid));
          model.calls.delete(sid);
          expect(await scripts.sweepPod(pod)).toBeGreaterThanOrEqual(1);
        } else if (roll < 0.95) {
          // rebalance, sometimes under new targets (same tiers, so the chain rules still hold)
          let text: string | undefined;
          if (chance(0.5)) {
            const config = JSON.parse(TIER_CONFIG) as Record<string, { target: number }>;
            for (const spec of Object.values(config)) spec.target = Math.floor(random() * 4);
            document = toTierDocument(parseTierConfig(JSON.stringify(config)), EXTRA_TIER);
            text = JSON.stringify(document);
          }
          log.push(`rebalanceTiers ${text ? document.order.map((tier) => `${tier}=${document.tiers[tier].target}`).join(',') : '(stored config)'}`);
          const busy = new Map([...model.calls.values()].map((call) => [call.pod, snapshot.pods.get(call.pod)!.tier]));
          const moved = await scripts.rebalanceTiers(text);
          expect(moved).toBeGreaterThanOrEqual(0);
          expect(await scripts.rebalanceTiers()).toBe(0);
          const after = await readSnapshot(pool, document, model);
          for (const [name, tier] of busy) expect({ name, tier: after.pods.get(name)!.tier }).toEqual({ name, tier });
          // ...and every idle pod now sits in its ordinal tier.
          for (const name of model.pods.keys()) {
            if (!busy.has(name)) expect({ name, tier: after.pods.get(name)!.tier }).toEqual({ name, tier: ordinalTierOf(name, document) });
          }
        } else {
          // an allocation for a call that is live elsewhere in the fleet, repeated: same answer
          const liveSids = [...model.calls.keys()];
          if (liveSids.length === 0) continue;
          const sid = pick(liveSids);
          log.push(`repeat allocate ${sid}`);
          const call = model.calls.get(sid)!;
          const result = await scripts.allocate({ callSid: sid, merchantId: pick(Object.keys(MERCHANTS)), provider: '', metadata: '', refuseTombstoned: true });
          expect(result).toMatchObject({ ok: true, allocation: { podName: call.pod, podUid: call.uid, wasExisting: true } });
        }

        expect(await scripts.checkInvariants()).toEqual([]);
        const previousLength = snapshot.streamLength;
        snapshot = await readSnapshot(pool, document, model);
        expect(breaches(snapshot, document, model)).toEqual([]);
        // Every state change above wrote its own event, in the same script.
        expect(snapshot.streamLength - previousLength).toBe(events);
      }
    } catch (error) {
      if (error instanceof Error) {
        error.message = `seed ${seed} failed at step ${step} (replay: this seed in SEEDS)\nlast steps:\n  ${log.slice(-12).join('\n  ')}\n\n${error.message}`;
      }
      throw error;
    } finally {
      await pool.close();
    }
  });
});

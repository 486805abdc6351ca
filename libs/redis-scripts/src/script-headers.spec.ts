import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Redis from 'ioredis';
import { ScriptCode } from '@smart-router/allocation';
import { RedisKeys } from '@smart-router/redis-keys';
import { RedisServer, createPoolFixture, sharedRedisUrl, uniquePrefix, waitFor } from '@smart-router/testing';
import { LUA_DIR, defineScripts, readScripts } from './script-loader';
import { FleetScripts } from './fleet-scripts';
import { WebhookReplayScripts } from './webhook-replay-scripts';
import { RolloutScripts } from './rollout-scripts';
import { LivenessScripts } from './liveness-scripts';

/**
 * The contract header of every Lua script (STYLE.md, "Lua") checked against
 * the file name, the loader, the body, the key schema and, by tracing a real
 * redis-server with MONITOR, against the keys the scripts actually touch.
 */

const FILE_NAME = /^([a-z][A-Za-z]+)-(\d+)\.lua$/;
const PLACEHOLDER = /\{[a-z_]+\}/g;
/** `{tier}`, `{name}`, `{call_sid}` all mean "one segment chosen at run time". */
const normalise = (template: string) => template.replace(PLACEHOLDER, '{x}');

interface KeyDoc {
  description: string;
  template: string;
}

interface Header {
  file: string;
  name: string;
  keysInName: number;
  text: string;
  body: string;
  keys: Map<number, KeyDoc>;
  argv: Map<number, string>;
  output: string;
  events: string;
  derived: { fromArgv: number; templates: string[] } | null;
}

interface Helper {
  name: string;
  source: string;
}

/** Drops `--[[ ]]` blocks and `--` comments, so prose never counts as code. */
function stripComments(lua: string): string {
  return lua.replace(/--\[\[[\s\S]*?\]\]/g, '').replace(/--.*$/gm, '');
}

function section(text: string, label: string, labels: string[]): string {
  const start = text.indexOf(label);
  if (start < 0) return '';
  const ends = labels.map((other) => text.indexOf(other, start + label.length)).filter((index) => index > start);
  return text.slice(start + label.length, ends.length > 0 ? Math.min(...ends) : undefined);
}

function parseHeader(file: string): Header {
  const match = FILE_NAME.exec(file);
  if (!match) throw new Error(`${file}: name does not match <verbNoun>-<keys>.lua`);
  const source = readFileSync(join(LUA_DIR, file), 'utf8');
  if (!source.startsWith('--[[')) throw new Error(`${file}: does not open with a --[[ ]] contract header`);
  const end = source.indexOf(']]');
  const text = source.slice(4, end);
  const labels = ['Input:', 'Output:', 'Events:', 'Derived keys'];
  const input = section(text, 'Input:', labels);
  const keys = new Map<number, KeyDoc>();
  for (const [, index, rest] of input.matchAll(/^\s*KEYS\[(\d+)\]\s+(.*)$/gm)) {
    const parts = /^(.*?)\s{2,}(\S+)\s*$/.exec(rest);
    keys.set(Number(index), { description: parts ? parts[1] : rest, template: parts ? parts[2] : '' });
  }
  const argv = new Map<number, string>();
  for (const [, index, rest] of input.matchAll(/^\s*ARGV\[(\d+)\]\s+(.*)$/gm)) argv.set(Number(index), rest);
  const derivedText = section(text, 'Derived keys', labels);
  const fromArgv = /built from ARGV\[(\d+)\]/.exec(derivedText);
  return {
    file,
    name: match[1],
    keysInName: Number(match[2]),
    text,
    body: stripComments(source.slice(end + 2)),
    keys,
    argv,
    output: section(text, 'Output:', labels),
    events: section(text, 'Events:', labels),
    derived: derivedText
      ? {
          fromArgv: fromArgv ? Number(fromArgv[1]) : NaN,
          templates: [...derivedText.matchAll(/\b[a-z]+(?::(?:\{[a-z_]+\}|[a-z]+|\*))+/g)].map(([template]) => template),
        }
      : null,
  };
}

/** The shared helpers, one entry per `local function` of an include. */
function parseHelpers(): Map<string, Helper> {
  const helpers = new Map<string, Helper>();
  const dir = join(LUA_DIR, 'includes');
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.lua'))) {
    const source = stripComments(readFileSync(join(dir, file), 'utf8'));
    const starts = [...source.matchAll(/^local function (\w+)\(/gm)];
    starts.forEach((start, index) => {
      const to = index + 1 < starts.length ? starts[index + 1].index : source.length;
      helpers.set(start[1], { name: start[1], source: source.slice(start.index, to) });
    });
  }
  return helpers;
}

const HELPERS = parseHelpers();

/** Helpers reachable from a piece of code, following helper-to-helper calls. */
function helpersUsedBy(code: string): Helper[] {
  const used = new Map<string, Helper>();
  const visit = (text: string) => {
    for (const helper of HELPERS.values()) {
      if (used.has(helper.name)) continue;
      if (new RegExp(`\\b${helper.name}\\(`).test(text.replace(`local function ${helper.name}(`, ''))) {
        used.set(helper.name, helper);
        visit(helper.source);
      }
    }
  };
  visit(code);
  return [...used.values()];
}

/** Key templates from the schema library: every builder called with `{x}`, prefix ''. */
function schemaTemplates(): Set<string> {
  const keys = new RedisKeys('');
  const templates = new Set<string>();
  for (const method of Object.getOwnPropertyNames(RedisKeys.prototype)) {
    if (method === 'constructor' || method === 'podKeyPrefixes') continue;
    const build = (keys as unknown as Record<string, (arg: string) => string>)[method];
    templates.add(build.call(keys, '{x}'));
  }
  return templates;
}

/** Key templates a piece of code builds from the pod key prefixes table `P`. */
function derivedTemplatesIn(code: string): Set<string> {
  const prefixes = new RedisKeys('').podKeyPrefixes() as unknown as Record<string, string>;
  const schema = schemaTemplates();
  const found = new Set<string>();
  for (const [, field] of code.matchAll(/\bP\.(\w+)/g)) {
    if (field === 'pool') continue; // only through availableKey/assignedKey, below
    if (!(field in prefixes)) throw new Error(`P.${field} is not a RedisKeys.podKeyPrefixes field`);
    // A whole key (the wait queue, the call stream) rather than a prefix.
    found.add(schema.has(prefixes[field]) ? prefixes[field] : `${prefixes[field]}{x}`);
  }
  if (/\bavailableKey\(/.test(code)) found.add(normalise(new RedisKeys('').poolAvailable('{x}')));
  if (/\bassignedKey\(/.test(code)) found.add(normalise(new RedisKeys('').poolAssigned('{x}')));
  return found;
}

function expandDocumented(templates: string[]): Set<string> {
  const expanded = new Set<string>();
  for (const template of templates.map(normalise)) {
    if (template.endsWith(':*')) {
      const stem = template.slice(0, -1);
      expanded.add(`${stem}available`);
      expanded.add(`${stem}assigned`);
    } else {
      expanded.add(template);
    }
  }
  return expanded;
}

/** MONITOR prints arguments the way sdscatrepr quotes them. */
const unquote = (text: string) =>
  text.replace(/\\(x[0-9a-f]{2}|.)/g, (_all, code: string) =>
    code.length === 3 ? String.fromCharCode(parseInt(code.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' } as Record<string, string>)[code] ?? code,
  );
const range = (count: number) => Array.from({ length: count }, (_, index) => index + 1);
const sorted = (values: Iterable<number>) => [...values].sort((a, b) => a - b);
/**
 * Documented KEYS a script does not read. removePod takes the same KEYS layout
 * as upsertPod (the reconciler passes both the same way) but needs no tier
 * config: it empties the available pool whatever its Redis type.
 */
const UNREAD_KEYS: Record<string, number[]> = { removePod: [2] };
const uses = (code: string, what: 'KEYS' | 'ARGV') => new Set([...code.matchAll(new RegExp(`\\b${what}\\[(\\d+)\\]`, 'g'))].map(([, index]) => Number(index)));
const luaFiles = readdirSync(LUA_DIR).filter((file) => file.endsWith('.lua')).sort();
const headers = luaFiles.filter((file) => FILE_NAME.test(file)).map(parseHeader);

describe('Lua script contract headers', () => {
  it('every .lua file is named <verbNoun>-<keys>.lua, so the loader cannot skip one silently', () => {
    expect(luaFiles.length).toBeGreaterThan(0);
    expect(luaFiles.filter((file) => !FILE_NAME.test(file))).toEqual([]);
    expect(readScripts().map((script) => script.name).sort()).toEqual(headers.map((header) => header.name).sort());
  });

  it('every include directive names an existing include and is inlined by the loader', () => {
    for (const script of readScripts()) {
      expect({ script: script.name, leftover: script.source.match(/^--- @include .*$/m) }).toEqual({ script: script.name, leftover: null });
    }
  });

  describe.each(headers.map((header) => [header.file, header] as const))('%s', (_file, header) => {
    const helpers = helpersUsedBy(header.body);
    const reachable = [header.body, ...helpers.map((helper) => helper.source)].join('\n');

    it('opens with a purpose and Input, Output and Events sections', () => {
      const purpose = header.text.slice(0, header.text.indexOf('Input:')).trim();
      expect(purpose.length).toBeGreaterThan(20);
      expect(header.text).toMatch(/^\s*Input:/m);
      expect(header.output.trim()).not.toBe('');
      expect(header.events.trim()).not.toBe('');
    });

    it('documents KEYS[1..N] where N is the number in the file name and the loader numberOfKeys', () => {
      const loaded = readScripts().find((script) => script.name === header.name);
      expect(loaded?.numberOfKeys).toBe(header.keysInName);
      expect(sorted(header.keys.keys())).toEqual(range(header.keysInName));
      if (header.keysInName === 0) expect(header.text).toMatch(/Input: none/);
    });

    it('documents ARGV[1..M] without gaps', () => {
      expect(sorted(header.argv.keys())).toEqual(range(header.argv.size));
    });

    it('uses exactly the documented KEYS and ARGV, always with a literal index', () => {
      expect(header.body).not.toMatch(/\b(KEYS|ARGV)\[(?!\d+\])/);
      expect(header.body).not.toMatch(/#(KEYS|ARGV)\b|unpack\((KEYS|ARGV)\)/);
      const unread = UNREAD_KEYS[header.name] ?? [];
      expect(sorted([...uses(header.body, 'KEYS'), ...unread])).toEqual(sorted(header.keys.keys()));
      expect(sorted(uses(header.body, 'ARGV'))).toEqual(sorted(header.argv.keys()));
    });

    it('names each KEYS entry with a template the key schema library builds', () => {
      const schema = schemaTemplates();
      for (const [index, doc] of header.keys) {
        expect({ index, template: doc.template, inSchema: schema.has(normalise(doc.template)) }).toEqual({ index, template: doc.template, inSchema: true });
      }
    });

    it('builds pod-scoped keys only from the documented prefixes argument, and only the documented ones', () => {
      const touched = derivedTemplatesIn(reachable);
      if (!header.derived) {
        expect([...touched]).toEqual([]);
        expect(header.body).not.toMatch(/cjson\.decode\(ARGV/);
        return;
      }
      const { fromArgv, templates } = header.derived;
      expect(header.argv.get(fromArgv)).toMatch(/pod key prefixes JSON/);
      expect(header.body).toMatch(new RegExp(`local P = cjson\\.decode\\(ARGV\\[${fromArgv}\\]\\)`));
      const documented = expandDocumented(templates);
      const schema = schemaTemplates();
      for (const template of documented) expect({ template, inSchema: schema.has(template) }).toEqual({ template, inSchema: true });
      expect([...touched].filter((template) => !documented.has(template))).toEqual([]);
    });

    it('documents every return code of the body, and each negative code is a ScriptCode', () => {
      const returned = new Set([...header.body.matchAll(/\breturn\s+(-?\d+)\b/g)].map(([, code]) => Number(code)));
      const documented = new Set([...header.output.matchAll(/^\s*(-?\d+)\s/gm)].map(([, code]) => Number(code)));
      expect(sorted(returned)).toEqual(sorted(documented));
      const known = new Set(Object.values(ScriptCode).filter((value): value is number => typeof value === 'number'));
      for (const code of documented) if (code < 0) expect({ code, known: known.has(code) }).toEqual({ code, known: true });
      if (/\breturn\s+\{1\b/.test(header.body)) expect(header.output).toMatch(/^\s*\{1,/m);
    });

    it('documents every stream entry the script (or a helper it calls) writes', () => {
      const xadds = [...reachable.matchAll(/'XADD',\s*([^,]+),[\s\S]*?'type',\s*([^,]+),/g)].map(([, stream, type]) => ({ stream: stream.trim(), type: type.trim() }));
      if (/^\s*none\s*$/.test(header.events)) {
        expect(xadds).toEqual([]);
        return;
      }
      expect(xadds.length).toBeGreaterThan(0);
      const documentedTypes = [...header.events.matchAll(/type=(\S+)/g)].map(([, type]) => type);
      for (const { type } of xadds) {
        const literal = /^'([^']+)'$/.exec(type);
        const argv = /^ARGV\[(\d+)\]$/.exec(type);
        const expected = literal ? literal[1] : argv ? `<ARGV[${argv[1]}]>` : `unrecognised ${type}`;
        expect({ type: expected, documented: documentedTypes.includes(expected) }).toEqual({ type: expected, documented: true });
      }
      // The stream written to is one of the KEYS, documented by its template.
      const streams = new Set([...header.events.matchAll(/^\s*(\S+)\s+type=/gm)].map(([, stream]) => stream));
      for (const { stream } of xadds.filter((xadd) => /^KEYS\[\d+\]$/.test(xadd.stream))) {
        const index = Number(/\d+/.exec(stream)![0]);
        expect(streams.has(header.keys.get(index)?.template ?? '?')).toBe(true);
      }
      // Helpers receive the stream as an argument; the caller must pass a KEYS entry.
      for (const helper of helpers.filter((candidate) => /'XADD'/.test(candidate.source))) {
        for (const call of header.body.matchAll(new RegExp(`\\b${helper.name}\\(([^)]*)\\)`, 'g'))) {
          const keysPassed = [...call[1].matchAll(/KEYS\[(\d+)\]/g)].map(([, index]) => header.keys.get(Number(index))?.template);
          expect(keysPassed.some((template) => template !== undefined && streams.has(template))).toBe(true);
        }
      }
    });

    it('does not read KEYS or ARGV inside a shared helper (the includer header could not describe it)', () => {
      for (const helper of helpers) expect({ helper: helper.name, refs: helper.source.match(/\b(KEYS|ARGV)\[/) }).toEqual({ helper: helper.name, refs: null });
    });
  });

  it('every script compiles on a real Redis and is registered as a command', async () => {
    const redis = new Redis(sharedRedisUrl(), { maxRetriesPerRequest: 1 });
    try {
      for (const script of readScripts()) {
        const sha = await redis.script('LOAD', script.source);
        expect(sha).toBe(createHash('sha1').update(script.source).digest('hex'));
      }
      defineScripts(redis);
      for (const script of readScripts()) expect(typeof (redis as unknown as Record<string, unknown>)[script.name]).toBe('function');
    } finally {
      await redis.quit();
    }
  });
});

/**
 * Runs every script through the typed entry point on a private redis-server
 * watched with MONITOR, then checks each key a script touched: it is one of
 * the KEYS the call passed (matching the header's template for that
 * position), or a pod-scoped key of a template the header lists as derived.
 * Private server: MONITOR must see no other test's traffic.
 */
describe('keys the scripts actually touch (MONITOR trace)', () => {
  let server: RedisServer;

  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(() => server.dispose());

  interface Invocation {
    script: string;
    keys: string[];
    commands: string[][];
  }

  it('every key a script touches is a passed KEYS entry or a documented derived key under the prefix', async () => {
    const prefix = uniquePrefix('{trace}');
    const byHash = new Map(readScripts().map((script) => [createHash('sha1').update(script.source).digest('hex'), script]));
    const bySource = new Map(readScripts().map((script) => [script.source, script]));
    const invocations: Invocation[] = [];
    const sentinel = `trace-done-${Date.now()}`;
    let sawSentinel = false;

    const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    const monitor = await admin.monitor();
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      const [command, ...rest] = args.map((arg) => unquote(String(arg)));
      const verb = command.toLowerCase();
      if (source !== 'lua' && (verb === 'evalsha' || verb === 'eval')) {
        const script = verb === 'evalsha' ? byHash.get(rest[0]) : bySource.get(rest[0]);
        const count = Number(rest[1]);
        invocations.push({ script: script?.name ?? `unknown script ${rest[0].slice(0, 40)}`, keys: rest.slice(2, 2 + count), commands: [] });
      } else if (source === 'lua') {
        invocations[invocations.length - 1]?.commands.push([command, ...rest]);
      } else if (verb === 'echo' && rest[0] === sentinel) {
        sawSentinel = true;
      }
    });

    const tierConfig = JSON.stringify({
      gold: { type: 'exclusive', target: 1 },
      standard: { type: 'exclusive', target: 1 },
      basic: { type: 'shared', target: 1, max_concurrent: 3 },
      merchant_acme: { type: 'exclusive', target: 1, dedicated: true },
    });
    const pool = await createPoolFixture({ url: server.url, prefix, tierConfig, pods: ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'], connectTimeoutMs: 60000 });
    try {
      const { scripts, redis, keys } = pool;
      await redis.hset(keys.merchantConfig(), 'acme', JSON.stringify({ tier: 'dedicated', pool: 'merchant_acme' }), 'shop', JSON.stringify({ tier: 'basic' }));
      const allocate = (callSid: string, merchantId = '', refuseTombstoned = false) =>
        scripts.allocate({ callSid, merchantId, provider: 'twilio', metadata: '{}', refuseTombstoned });
      await allocate('CA-acme', 'acme');
      await allocate('CA-acme', 'acme');
      await allocate('CA-gold', 'gold-merchant');
      await scripts.connect('CA-gold', 'api');
      await scripts.connect('CA-gold', 'twilio', 1);
      await scripts.connect('CA-unknown', 'api');
      await scripts.release('CA-gold', 'stream_stopped', 'call.released', Date.now(), undefined, { allocationId: 999999 });
      await scripts.release('CA-gold', 'connect_timeout', 'call.released', Date.now() + 120000, undefined, { connectTimeout: true });
      await allocate('CA-shop-1', 'shop');
      await allocate('CA-shop-2', 'shop');
      await allocate('CA-plain');
      await scripts.release('CA-plain', 'hangup');
      await allocate('CA-plain', '', true);
      await scripts.release('CA-unknown', '');
      // SPEC 11 re-home: a move within the merchant's chain, its retry, and an unknown call.
      const moving = await allocate('CA-move', 'shop');
      if (moving.ok) {
        await scripts.rehome('CA-move', moving.allocation.allocationId!, 2);
        await scripts.rehome('CA-move', moving.allocation.allocationId!, 2);
      }
      await scripts.rehome('CA-unknown', 1, 2);
      await scripts.setDrain('voice-agent-2', true);
      await scripts.release('CA-shop-1', 'completed', 'call.reaped');
      await scripts.setDrain('voice-agent-2', false);
      await scripts.setDrain('no-such-pod', true);
      await scripts.upsertPod({ name: 'voice-agent-2', uid: 'replaced', ready: true, terminating: false, metadata: {}, pinnedTier: '', term: 3 });
      await scripts.upsertPod({ name: 'voice-agent-1', uid: pool.uids.get('voice-agent-1')!, ready: false, terminating: false, metadata: {}, pinnedTier: '', term: 2 });
      await scripts.upsertPod({ name: 'voice-agent-1', uid: pool.uids.get('voice-agent-1')!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, snapshotAt: 0 });
      await scripts.removePod('voice-agent-3', '', 3);
      await scripts.removePod('voice-agent-4', '', null, Date.now());
      await redis.del(keys.call('CA-acme'));
      await scripts.sweepPod('voice-agent-0');
      await scripts.sweepPod('voice-agent-3');
      await scripts.rebalanceTiers();
      await scripts.rebalanceTiers(JSON.stringify({ order: ['gold', 'standard', 'basic'], extra: 'standard', tiers: { gold: { type: 'exclusive', target: 2, max_concurrent: 1, dedicated: false }, standard: { type: 'exclusive', target: 1, max_concurrent: 1, dedicated: false }, basic: { type: 'shared', target: 1, max_concurrent: 3, dedicated: false }, merchant_acme: { type: 'exclusive', target: 1, max_concurrent: 1, dedicated: true } } }));
      // Waiting: fill the chain until a request queues, then free a pod (hand-off) and settle.
      await redis.hset(keys.merchantConfig(), 'capped', JSON.stringify({ tier: 'standard', max_calls: 1 }));
      await allocate('CA-capped-1', 'capped');
      await allocate('CA-capped-2', 'capped');
      const live: string[] = [];
      for (let index = 0; index < 10; index += 1) {
        const result = await scripts.allocate({ callSid: `CA-wait-${index}`, merchantId: '', provider: '', metadata: '', refuseTombstoned: false, waitMs: 5000 });
        if (result.ok) live.push(`CA-wait-${index}`);
        else if (result.code === ScriptCode.Queued) {
          await scripts.allocate({ callSid: `CA-wait-${index}`, merchantId: '', provider: '', metadata: '', refuseTombstoned: false, waitMs: 5000 });
          await scripts.settleWait(`CA-wait-${index}`);
          await scripts.release(live[0], 'done');
          await scripts.settleWait(`CA-wait-${index}`);
          break;
        }
      }
      await scripts.settleWait('CA-never-waited');
      // Versioned fleets (SPEC 12): a version on a pod, a rollout revision, a split allocation (shared and
      // exclusive tiers) and its release counted per version.
      await scripts.upsertPod({ name: 'voice-agent-1', uid: pool.uids.get('voice-agent-1')!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version: 'v2' });
      const rollouts = new RolloutScripts(redis, keys, 1000);
      await rollouts.rollback('trace: nothing to return to');
      await rollouts.set({ targets: [{ version: 'v2', percent: 100 }], assignment: 'random', guardrail: null }, 'trace');
      await rollouts.setIfLive({ targets: [{ version: '', percent: 100 }], assignment: 'random', guardrail: null }, 0, 'trace: stale', 'rollout.promoted');
      await rollouts.setIfLive({ targets: [{ version: 'v7', percent: 100 }], assignment: 'random', guardrail: null }, 0, 'trace: unknown version', 'rollout.promoted', Date.now(), 'v7');
      await rollouts.rollback('trace: nothing before revision 1');
      await rollouts.set({ targets: [{ version: '', percent: 50 }, { version: 'v2', percent: 50 }], assignment: 'sticky_by_caller', guardrail: null }, 'trace');
      await rollouts.rollback('trace');
      // The rollback's replica move (rollout:move, revision 3): updated, a stale finish, abandoned, then none.
      await rollouts.settleMove(3, 'update', { cover: 2, seen_at: Date.now() });
      await rollouts.settleMove(2, 'done');
      await rollouts.settleMove(3, 'abandon', {}, 'trace');
      await rollouts.settleMove(3, 'done');
      await rollouts.set({ targets: [{ version: '', percent: 50 }, { version: 'v2', percent: 50 }], assignment: 'sticky_by_caller', guardrail: null }, 'trace');
      await scripts.allocate({ callSid: 'CA-split', merchantId: '', provider: 'twilio', metadata: '{}', refuseTombstoned: false, caller: '+15550100' });
      await scripts.allocate({ callSid: 'CA-split-shop', merchantId: 'shop', provider: 'twilio', metadata: '{}', refuseTombstoned: false });
      await scripts.release('CA-split', 'hangup');
      await scripts.release('CA-split-shop', 'hangup');
      // Fleet: unknown size, observe, plan a scale-down (marks), step (busy or commit), cancel, unlock.
      const fleet = new FleetScripts(redis, keys, 'voice-agent', 1000);
      await fleet.plan(3, 'trace');
      await fleet.step(5, 'trace-lock', 5000);
      await fleet.plan(3, 'trace');
      await fleet.step(5, 'trace-lock', 5000);
      await fleet.step(5, 'other-lock', 5000);
      await fleet.plan(5, 'trace');
      await fleet.step(5, 'trace-lock', 5000);
      await fleet.unlock('trace-lock');
      // Autoscaler settings: a write, a stale compare-and-set, a disabling write.
      await fleet.setAutoscalerConfig('{"enabled":true}', '', true);
      await fleet.setAutoscalerConfig('{"enabled":false}', 'stale', false);
      await fleet.setAutoscalerConfig('{"enabled":false}', '{"enabled":true}', false);
      await scripts.setMerchantConfig('late', '{"tier":"basic"}', 'a document nobody stored');
      await scripts.setMerchantConfig('late', '', '*');
      // Replay memory of signed answer webhooks: claim (one and two identities), seen again, record, stale record.
      const replays = new WebhookReplayScripts(redis, keys);
      await replays.claim(['aa'], 'claim-1', 60);
      await replays.claim(['bb', 'cc'], 'claim-2', 60);
      await replays.claim(['dd', 'cc'], 'claim-3', 60);
      await replays.record(['bb', 'cc'], 'claim-2', '{"status":200}');
      await replays.record(['aa'], 'not-the-claim', '{"status":200}');
      // Liveness (SPEC 11): heartbeats, suspect, dead (its calls ended), a stale and a clean rejoin, media stalls.
      const liveness = new LivenessScripts(redis, keys, 1000);
      const held = await allocate('CA-held');
      await scripts.connect('CA-held', 'api');
      const heldPod = held.ok ? held.allocation.podName : 'voice-agent-0';
      await liveness.recordHeartbeat(heldPod, [{ callSid: 'CA-held', allocationId: null, mediaIn: 1, mediaOut: 1 }, { callSid: 'CA-none', allocationId: 3, mediaIn: 1, mediaOut: 1 }]);
      await liveness.recordHeartbeat('no-such-pod', []);
      await liveness.endStalledCalls(0);
      await liveness.endStalledCalls(1);
      await redis.zadd(keys.heartbeats(), 0, heldPod);
      await liveness.checkLiveness({ suspectMs: 1, deadMs: 1 });
      await liveness.recordHeartbeat(heldPod, [{ callSid: 'CA-held', allocationId: null, mediaIn: 1, mediaOut: 1 }]);
      await liveness.recordHeartbeat(heldPod, []);
      await liveness.checkLiveness({ suspectMs: 0, deadMs: 60000 });
      await scripts.ping();
      await scripts.checkInvariants();
      await scripts.primaryId();
      await redis.echo(sentinel);
      await waitFor(() => sawSentinel, { what: 'MONITOR to deliver the trace' });
    } finally {
      await pool.close();
      monitor.disconnect();
      await admin.quit();
    }

    const headerOf = new Map(headers.map((header) => [header.name, header]));
    const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    // `[^:]*`: a segment may be empty (the agent version of a pod without the VERSION_LABEL is '', SPEC 12).
    const patternOf = (template: string) => new RegExp(`^${escape(prefix)}${escape(normalise(template)).replace(/\\\{x\\\}/g, '[^:]*')}$`);
    const resolver = new Redis(server.url, { maxRetriesPerRequest: 1 });
    const strays: string[] = [];
    try {
      const exercised = new Set(invocations.map((invocation) => invocation.script));
      expect(headers.map((header) => header.name).filter((name) => !exercised.has(name))).toEqual([]);
      for (const invocation of invocations) {
        const header = headerOf.get(invocation.script);
        if (!header) {
          strays.push(invocation.script);
          continue;
        }
        // The entry point passes the KEYS in the documented order.
        expect(invocation.keys.length).toBe(header.keysInName);
        invocation.keys.forEach((key, index) => {
          const template = header.keys.get(index + 1)!.template;
          expect({ script: header.name, index: index + 1, key, matches: patternOf(template).test(key) }).toEqual({ script: header.name, index: index + 1, key, matches: true });
        });
        const derived = [...expandDocumented(header.derived?.templates ?? [])].map(patternOf);
        for (const command of invocation.commands) {
          let touched: string[];
          try {
            touched = (await resolver.call('COMMAND', 'GETKEYS', ...command)) as string[];
          } catch {
            touched = []; // a command with no key arguments
          }
          for (const key of touched) {
            if (invocation.keys.includes(key) || derived.some((pattern) => pattern.test(key))) continue;
            strays.push(`${header.name}: ${command[0]} ${key}`);
          }
        }
      }
    } finally {
      await resolver.quit();
    }
    expect(strays).toEqual([]);
  });

  it('no script is shadowed by a built-in ioredis command, so PoolScripts.ping() is a real script round trip', async () => {
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    const pool = await createPoolFixture({ url: server.url });
    try {
      // defineScripts skips a name the connection already has as a method.
      const shadowed = readScripts().filter((script) => typeof (Redis.prototype as unknown as Record<string, unknown>)[script.name] === 'function');
      expect(shadowed.map((script) => script.name)).toEqual([]);
      const ping = readScripts().find((script) => /^return 'PONG'$/m.test(script.source))!;
      const sha = createHash('sha1').update(ping.source).digest('hex');
      await redis.script('FLUSH');
      expect(await pool.scripts.ping()).toBe('PONG');
      // EVAL after NOSCRIPT caches the script; a plain PING command leaves the cache empty.
      expect(await redis.script('EXISTS', sha)).toEqual([1]);
    } finally {
      await pool.close();
      await redis.quit();
    }
  });
});

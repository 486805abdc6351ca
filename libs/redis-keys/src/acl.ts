import { createHash } from 'node:crypto';
import { RedisKeys } from './keys';

/**
 * Redis ACL users, one per app (SPEC 10.1 "Redis least privilege"), derived
 * from the key schema: each key builder below says which app may read or
 * write its keys, so a key added to RedisKeys without a decision here does
 * not compile. `redisAclFile` turns the rules into a users.acl file
 * (tools/redis-acl prints one; compose and k8s load it).
 *
 * What the rules rest on:
 * - Redis checks every command a Lua script runs against the caller's ACL,
 *   with the key it names at that moment (the scripts build pod, call and
 *   waiter keys from the prefixes in ARGV, security review L6), so the key
 *   patterns cover those derived keys, not only the declared KEYS.
 * - EVAL/EVALSHA check declared KEYS for read AND write, whatever the script
 *   does with them, so a key handed to a script needs `~` (read-write), not
 *   `%R~`. Read-only patterns are for keys an app reads with plain commands.
 * - Only pod-watcher may add to the pod event stream: the reconciler reaches
 *   it through a selector that allows its consumer-group commands and no
 *   XADD; admin reads it; webhooks and allocation-api cannot touch it.
 * - Commands: data commands (@read, @write) limited by those keys, the
 *   scripts' EVAL/EVALSHA, what ioredis and BullMQ send on connect (INFO for
 *   the ready check and the role check behind Sentinel, CLIENT SETNAME,
 *   CLUSTER SLOTS), WAIT for replica acknowledgements; never @dangerous or
 *   @admin (FLUSHALL, FLUSHDB, CONFIG, KEYS, DEBUG, SHUTDOWN, MONITOR, ACL,
 *   CLIENT KILL...), nor SCAN / RANDOMKEY (keyless: they would list keys
 *   outside the prefix), SELECT or SCRIPT/FUNCTION management.
 */
export const ACL_APPS = ['allocation-api', 'webhooks', 'admin', 'pod-watcher', 'reconciler'] as const;
export type AclApp = (typeof ACL_APPS)[number];

/**
 * Users beside the apps: `voice-agents` is the simulated voice agents (tools/sim,
 * compose and `npm start` only: they look a call's pod up); `healthcheck` may
 * only PING (compose's probe); `ops` is a human operator's full access, only
 * written when it has a password.
 */
export const ACL_EXTRA_USERS = ['voice-agents', 'healthcheck', 'ops'] as const;
export type AclUser = AclApp | (typeof ACL_EXTRA_USERS)[number];

/** How an app uses a key: read-write, read only, the pod stream's consumer group, a pub/sub channel. */
export type KeyAccess = 'rw' | 'read' | 'consume' | 'channel';

/** The names of RedisKeys' builders: methods returning one key (or channel, or prefix). */
export type KeyBuilder = {
  [K in keyof RedisKeys]: RedisKeys[K] extends (...args: never[]) => string ? K : never;
}[keyof RedisKeys];

type Grants = Partial<Record<AclUser, KeyAccess>>;

/** The pool state every Lua script that allocates, releases or frees a pod touches (includes/pod-state.lua, wait-queue.lua). */
const POOL_STATE: Grants = { 'allocation-api': 'rw', webhooks: 'rw', admin: 'rw', reconciler: 'rw' };
/** Fleet plan and autoscaler: admin sets them (planFleet, setAutoscalerConfig), the reconciler runs the step. */
const FLEET: Grants = { admin: 'rw', reconciler: 'rw' };

/**
 * Who may use each key. `rw` on a key handed to a script as KEYS (see above);
 * the hand-off to a waiting request runs inside every script that frees a pod,
 * so the wait queue belongs to the pool state.
 */
export const KEY_ACCESS: Record<KeyBuilder, Grants> = {
  poolAvailable: POOL_STATE,
  poolAssigned: POOL_STATE,
  pod: POOL_STATE,
  podTier: POOL_STATE,
  podDraining: POOL_STATE,
  podRemoving: POOL_STATE,
  lease: POOL_STATE,
  podDeleted: POOL_STATE,
  podCalls: POOL_STATE,
  // The simulated voice agents read which pod a call is on (tools/sim callOwnerInRedis).
  call: { ...POOL_STATE, 'voice-agents': 'read' },
  tombstone: POOL_STATE,
  // Re-home tickets (SPEC 11): written by releaseCall (webhooks' stream-status release), consumed by rehomeCall (webhooks);
  // pool state like the call record, as every app that runs those scripts may touch it.
  rehomeTicket: POOL_STATE,
  merchantConfig: POOL_STATE,
  merchantCalls: POOL_STATE,
  podMetadata: POOL_STATE,
  pods: POOL_STATE,
  activeCalls: POOL_STATE,
  pendingCalls: POOL_STATE,
  allocationSequence: POOL_STATE,
  tierConfig: POOL_STATE,
  epoch: POOL_STATE,
  callStream: POOL_STATE,
  waitQueue: POOL_STATE,
  waitSequence: POOL_STATE,
  waiter: POOL_STATE,
  // The tier index and per-merchant count of waiters (SPEC 10.2), kept by the same scripts as the queue.
  waitTier: POOL_STATE,
  waitMerchant: POOL_STATE,
  // Signed answer webhooks seen before (SPEC 10.2 replays): only webhooks claims and answers them.
  webhookReplay: { webhooks: 'rw' },
  // Published by the hand-off (any freeing script); allocation-api and webhooks subscribe.
  waitChannel: { 'allocation-api': 'channel', webhooks: 'channel', admin: 'channel', reconciler: 'channel' },
  // Only the watcher appends pod events; the reconciler consumes them (no XADD); admin shows them.
  podStream: { 'pod-watcher': 'rw', reconciler: 'consume', admin: 'read' },
  // The watcher's heartbeat, shown by admin's status; the term is fenced by the reconciler's upsert/remove scripts.
  watcherLeader: { 'pod-watcher': 'rw', admin: 'read' },
  watcherTerm: { reconciler: 'rw' },
  lastReconcile: { reconciler: 'rw', admin: 'read' },
  fleetPlan: FLEET,
  fleetRemoving: FLEET,
  // Another StatefulSet's plan during a rollout's replica move (SPEC 12), like the primary's.
  fleetPlanOf: FLEET,
  fleetRemovingOf: FLEET,
  fleetStream: FLEET,
  autoscalerConfig: FLEET,
  autoscalerState: FLEET,
  fleetLock: { reconciler: 'rw' },
  // Agent versions (SPEC 12): the reconciler's upsert/remove keep them, allocation reads them, admin shows them.
  versions: POOL_STATE,
  versionPods: POOL_STATE,
  // The split: admin writes revisions (setRollout), the reconciler's guardrail rolls back; allocation only reads it.
  rollout: { ...FLEET, 'allocation-api': 'read', webhooks: 'read' },
  rolloutRevisions: FLEET,
  // Promote and rollback ask for a replica move; the reconciler's fleet step carries it out.
  rolloutMove: FLEET,
  versionStatefulSets: FLEET,
  // Per-version counters written by the allocate and release scripts.
  rolloutStats: POOL_STATE,
  // Heartbeats (SPEC 11): allocation-api records them, the reconciler's liveness job reads and prunes them (admin reads liveness from the pod hash).
  heartbeats: { 'allocation-api': 'rw', reconciler: 'rw' },
  callMedia: { 'allocation-api': 'rw', reconciler: 'rw' },
  // BullMQ's queue: admin enqueues a manual reconcile, the reconciler runs every job.
  bullPrefix: { admin: 'rw', reconciler: 'rw' },
};

/** The glob of every key a builder can return: its argument (pod name, call_sid, ...) becomes `*`. */
export function keyPattern(keys: RedisKeys, builder: KeyBuilder): string {
  const build = keys[builder] as (argument: string) => string;
  const key = build.call(keys, '*');
  // BullMQ appends `:<queue>:<suffix>` to its prefix.
  return builder === 'bullPrefix' ? `${key}:*` : key;
}

/** Does glob `pattern` (only `*` wildcards, as our patterns are) match `text`? */
export function globMatches(pattern: string, text: string): boolean {
  const parts = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('.*')}$`, 's').test(text);
}

/** Patterns minus those another pattern of the list already covers (`voice:pod:tier:*` under `voice:pod:*`). */
function withoutCovered(patterns: string[]): string[] {
  const unique = [...new Set(patterns)];
  return unique.filter((pattern) => !unique.some((other) => other !== pattern && globMatches(other, pattern))).sort();
}

export interface AclRule {
  user: AclUser;
  /** Read-write key patterns (`~`). */
  keys: string[];
  /** Read-only key patterns (`%R~`). */
  readKeys: string[];
  /** Pub/sub channels (`&`). */
  channels: string[];
  /** Command rules in order (`-@all`, `+@read`, `-@dangerous`, `+info`, ...). */
  commands: string[];
  /** Selectors: `(~pattern +command ...)`, each a complete permission set of its own. */
  selectors: string[];
}

/** What ioredis and BullMQ send on every connection (ready check, names, cluster slots, QUIT). */
const CONNECTION = ['+ping', '+hello', '+auth', '+echo', '+quit', '+client|setname', '+client|getname', '+client|id', '+info', '+cluster|slots'];

/** Never, whatever a category above grants: explicit so the file reads as what it forbids. */
const FORBIDDEN = [
  '-@dangerous', '-@admin', '-flushall', '-flushdb', '-config', '-keys', '-debug', '-shutdown', '-monitor', '-acl',
  '-scan', '-randomkey', '-select', '-swapdb', '-migrate', '-script|flush', '-script|kill', '-function',
];

/** The pod stream's consumer-group commands (apps/reconciler/src/pod-stream.consumer.ts): no XADD, XDEL, XTRIM. */
const POD_STREAM_CONSUMER = ['+xreadgroup', '+xack', '+xautoclaim', '+xpending', '+xgroup|create', '+xgroup|delconsumer', '+xinfo|groups'];

function commandsOf(user: AclUser): string[] {
  // The scripts' EVAL/EVALSHA, the apps' own reads and writes, MULTI/EXEC pipelines, WAIT for replica
  // acknowledgements, TIME (wait-queue deadlines are on Redis's clock, inside the scripts).
  const stateApp = ['-@all', '+@read', '+@write', '+@transaction', '+eval', '+evalsha', '+wait', '+time', ...CONNECTION];
  switch (user) {
    case 'allocation-api':
    case 'webhooks':
      // One subscriber per process for wait:wake; the scripts publish on it.
      return [...stateApp, '+subscribe', '+unsubscribe', '+publish', ...FORBIDDEN, '+info'];
    case 'admin':
    case 'reconciler':
      return [...stateApp, '+publish', ...FORBIDDEN, '+info'];
    case 'pod-watcher':
      // XADD of pod events, the leader heartbeat (MULTI HSET PEXPIRE), PING for readiness.
      return ['-@all', '+xadd', '+hset', '+pexpire', '+multi', '+exec', '+discard', ...CONNECTION, ...FORBIDDEN, '+info'];
    case 'voice-agents':
      return ['-@all', '+hget', ...CONNECTION, ...FORBIDDEN, '+info'];
    case 'healthcheck':
      return ['-@all', '+ping', '+hello', '+auth', '+quit'];
    case 'ops':
      return ['+@all'];
  }
}

/** The ACL rule of every user, for a key prefix (REDIS_PREFIX). */
export function aclRules(prefix: string): AclRule[] {
  const keys = new RedisKeys(prefix);
  const users: AclUser[] = [...ACL_APPS, ...ACL_EXTRA_USERS];
  return users.map((user) => {
    const granted = (access: KeyAccess) =>
      (Object.keys(KEY_ACCESS) as KeyBuilder[]).filter((builder) => KEY_ACCESS[builder][user] === access).map((builder) => keyPattern(keys, builder));
    const consumed = granted('consume');
    return {
      user,
      keys: user === 'ops' ? ['*'] : withoutCovered(granted('rw')),
      readKeys: withoutCovered(granted('read')),
      channels: user === 'ops' ? ['*'] : withoutCovered(granted('channel')),
      commands: commandsOf(user),
      selectors: consumed.length > 0 ? [`(${consumed.map((pattern) => `~${pattern}`).join(' ')} ${POD_STREAM_CONSUMER.join(' ')})`] : [],
    };
  });
}

/**
 * The rule as ACL arguments after the user name and its passwords. For
 * `ACL SETUSER` on an existing user, send `reset` first (it also drops the
 * passwords, so they follow it).
 */
export function aclRuleArguments(rule: AclRule): string[] {
  return [
    'resetkeys',
    ...rule.keys.map((pattern) => `~${pattern}`),
    ...rule.readKeys.map((pattern) => `%R~${pattern}`),
    'resetchannels',
    ...rule.channels.map((channel) => `&${channel}`),
    ...rule.commands,
    ...rule.selectors,
  ];
}

/** Characters a password may hold in an ACL file line (no spaces, no quotes, no `#`). */
const PASSWORD = /^[A-Za-z0-9._~+\/=-]{16,256}$/;

/**
 * A users.acl file (Redis `aclfile`): one `user` line per user with a
 * password (two passwords = a rotation in progress: both are accepted), and
 * `user default off` so a connection without credentials can do nothing.
 * Every app needs a password; the extra users are written only with one.
 * `hashed`: store SHA-256 digests (`#…`), which Redis accepts the same way.
 */
export function redisAclFile(prefix: string, passwords: Partial<Record<AclUser, string[]>>, options: { hashed?: boolean } = {}): string {
  // `#<sha256>` instead of `>password`: the file (and whoever reads it) never holds a password.
  const secret = (password: string) => (options.hashed ? `#${createHash('sha256').update(password).digest('hex')}` : `>${password}`);
  // An ACL file holds `user` lines only (Redis refuses comments in it).
  const lines = ['user default off resetkeys resetchannels -@all'];
  for (const rule of aclRules(prefix)) {
    const secrets = passwords[rule.user] ?? [];
    if (secrets.length === 0) {
      if ((ACL_EXTRA_USERS as readonly AclUser[]).includes(rule.user)) continue;
      throw new Error(`no password for the Redis ACL user ${rule.user}`);
    }
    for (const password of secrets) {
      if (!PASSWORD.test(password)) throw new Error(`the password of ${rule.user} must be 16-256 characters of [A-Za-z0-9._~+/=-]`);
    }
    lines.push(['user', rule.user, 'reset', 'on', ...secrets.map(secret), ...aclRuleArguments(rule)].join(' '));
  }
  return `${lines.join('\n')}\n`;
}

import { RESERVED_POD_NAMES, RedisKeys } from './keys';

describe('RedisKeys', () => {
  const keys = new RedisKeys('voice:');

  it('builds the seed key names exactly (compatibility with the Go router)', () => {
    expect(keys.poolAvailable('standard')).toBe('voice:pool:standard:available');
    expect(keys.poolAssigned('basic')).toBe('voice:pool:basic:assigned');
    expect(keys.pod('voice-agent-0')).toBe('voice:pod:voice-agent-0');
    expect(keys.podTier('voice-agent-0')).toBe('voice:pod:tier:voice-agent-0');
    expect(keys.podDraining('voice-agent-0')).toBe('voice:pod:draining:voice-agent-0');
    expect(keys.lease('voice-agent-0')).toBe('voice:lease:voice-agent-0');
    expect(keys.call('CA123')).toBe('voice:call:CA123');
    expect(keys.merchantConfig()).toBe('voice:merchant:config');
    expect(keys.podMetadata()).toBe('voice:pod:metadata');
  });

  it('builds our own keys under the same prefix', () => {
    expect(keys.podCalls('voice-agent-1')).toBe('voice:pod:calls:voice-agent-1');
    expect(keys.pods()).toBe('voice:pods');
    expect(keys.activeCalls()).toBe('voice:calls:active');
    expect(keys.pendingCalls()).toBe('voice:calls:pending');
    expect(keys.allocationSequence()).toBe('voice:allocation:seq');
    expect(keys.tombstone('CA1')).toBe('voice:tombstone:CA1');
    expect(keys.webhookReplay('ab12')).toBe('voice:webhook:replay:ab12');
    expect(keys.tierConfig()).toBe('voice:config:tiers');
    expect(keys.epoch()).toBe('voice:epoch');
    expect(keys.watcherTerm()).toBe('voice:watcher:term');
    expect(keys.watcherLeader()).toBe('voice:watcher:leader');
    expect(keys.callStream()).toBe('voice:stream:calls');
    expect(keys.podStream()).toBe('voice:stream:pods');
    expect(keys.lastReconcile()).toBe('voice:reconcile:last');
    expect(keys.bullPrefix()).toBe('voice:bull');
    expect(keys.waitQueue()).toBe('voice:wait:queue');
    expect(keys.waitSequence()).toBe('voice:wait:seq');
    expect(keys.waiter('CA1')).toBe('voice:waiter:CA1');
    expect(keys.waitTier('gold')).toBe('voice:wait:tier:gold');
    expect(keys.waitMerchant('acme')).toBe('voice:wait:merchant:acme');
    expect(keys.waitChannel()).toBe('voice:wait:wake');
    expect(keys.merchantCalls('acme')).toBe('voice:merchant:calls:acme');
    expect(keys.versions()).toBe('voice:version:all');
    expect(keys.versionPods('v2')).toBe('voice:version:pods:v2');
    expect(keys.versionPods('')).toBe('voice:version:pods:');
    expect(keys.rollout()).toBe('voice:rollout:live');
    expect(keys.rolloutRevisions()).toBe('voice:rollout:revisions');
    expect(keys.rolloutStats('v2')).toBe('voice:rollout:stats:v2');
    expect(keys.heartbeats()).toBe('voice:heartbeats');
    expect(keys.callMedia()).toBe('voice:calls:media');
  });

  it('keeps a hash-tag prefix at the front of every key', () => {
    const tagged = new RedisKeys('{voice}:');
    expect(tagged.pod('voice-agent-0')).toBe('{voice}:pod:voice-agent-0');
    expect(tagged.poolAvailable('gold')).toBe('{voice}:pool:gold:available');
  });

  it('derives pod key prefixes that rebuild the same keys', () => {
    const prefixes = keys.podKeyPrefixes();
    expect(prefixes.pod + 'p').toBe(keys.pod('p'));
    expect(prefixes.tier + 'p').toBe(keys.podTier('p'));
    expect(prefixes.draining + 'p').toBe(keys.podDraining('p'));
    expect(prefixes.lease + 'p').toBe(keys.lease('p'));
    expect(prefixes.calls + 'p').toBe(keys.podCalls('p'));
    expect(prefixes.call + 'c').toBe(keys.call('c'));
    expect(prefixes.rehomeTicket + 'c').toBe(keys.rehomeTicket('c'));
    expect(prefixes.pool + 'gold:available').toBe(keys.poolAvailable('gold'));
    expect(prefixes.waiter + 'c').toBe(keys.waiter('c'));
    expect(prefixes.waitTier + 'gold').toBe(keys.waitTier('gold'));
    expect(prefixes.waitMerchant + 'm').toBe(keys.waitMerchant('m'));
    expect(prefixes.merchantCalls + 'm').toBe(keys.merchantCalls('m'));
    expect([prefixes.waitQueue, prefixes.waitChannel, prefixes.activeCalls, prefixes.callStream])
      .toEqual([keys.waitQueue(), keys.waitChannel(), keys.activeCalls(), keys.callStream()]);
    expect([prefixes.allocationSequence, prefixes.pendingCalls]).toEqual([keys.allocationSequence(), keys.pendingCalls()]);
    expect(prefixes.versionPods + 'v2').toBe(keys.versionPods('v2'));
    expect(prefixes.rolloutStats + 'v2').toBe(keys.rolloutStats('v2'));
    expect([prefixes.versions, prefixes.rollout]).toEqual([keys.versions(), keys.rollout()]);
  });

  it('reserves the pod names whose pod key is another key (pod:metadata)', () => {
    expect(keys.pod('metadata')).toBe(keys.podMetadata());
    expect([...RESERVED_POD_NAMES]).toEqual(['metadata']);
    expect(RESERVED_POD_NAMES.has('voice-agent-0')).toBe(false);
  });
});

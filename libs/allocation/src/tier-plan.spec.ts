import { parseTierConfig, SEED_TIER_CONFIG } from '@smart-router/config';
import { ordinalTier, planTiers } from './tier-plan';
import { buildChainRules } from './chain';

const tiers = parseTierConfig(SEED_TIER_CONFIG);
const pods = (...ordinals: number[]) => ordinals.map((n) => ({ name: `voice-agent-${n}` }));

describe('planTiers', () => {
  it('fills tiers in config order by ordinal; the rest join the extra tier', () => {
    expect(Object.fromEntries(planTiers(pods(4, 2, 0, 3, 1), tiers, 'standard'))).toEqual({
      'voice-agent-0': 'gold', 'voice-agent-1': 'standard', 'voice-agent-2': 'basic',
      'voice-agent-3': 'standard', 'voice-agent-4': 'standard',
    });
  });

  it('is deterministic whatever the arrival order (rebuild after data loss)', () => {
    const a = planTiers(pods(0, 1, 2, 3, 4, 5, 6), tiers, 'standard');
    const b = planTiers(pods(6, 5, 4, 3, 2, 1, 0), tiers, 'standard');
    expect([...a.entries()].sort()).toEqual([...b.entries()].sort());
  });

  it('honours pins; an ordinal decides alone, whatever tier the pod held or which other pods exist', () => {
    const plan = planTiers([{ name: 'voice-agent-3', pinnedTier: 'gold' }, ...pods(1, 2)], tiers, 'standard', new Map([['voice-agent-1', 'basic']]));
    expect(Object.fromEntries(plan)).toEqual({ 'voice-agent-1': 'standard', 'voice-agent-2': 'basic', 'voice-agent-3': 'gold' });
    expect(ordinalTier('voice-agent-0', tiers, 'standard')).toBe('gold');
    expect(ordinalTier('voice-agent-0', tiers, 'standard', 'nonexistent')).toBe('gold');
    expect(ordinalTier('voice-agent-9', tiers, 'standard')).toBe('standard');
  });

  it('tiers each StatefulSet by its own ordinals (SPEC 12): voice-agent-v2-0 is gold like voice-agent-0, whatever the other set holds', () => {
    const both = [...pods(0, 1, 2), ...[2, 0, 1].map((n) => ({ name: `voice-agent-v2-${n}` }))];
    expect(Object.fromEntries(planTiers(both, tiers, 'standard'))).toEqual({
      'voice-agent-0': 'gold', 'voice-agent-1': 'standard', 'voice-agent-2': 'basic',
      'voice-agent-v2-0': 'gold', 'voice-agent-v2-1': 'standard', 'voice-agent-v2-2': 'basic',
    });
    // Either set scaled down leaves the other's tiers as they were.
    expect(Object.fromEntries(planTiers([...pods(0), { name: 'voice-agent-v2-0' }, { name: 'voice-agent-v2-1' }, { name: 'voice-agent-v2-2' }], tiers, 'standard')))
      .toEqual({ 'voice-agent-0': 'gold', 'voice-agent-v2-0': 'gold', 'voice-agent-v2-1': 'standard', 'voice-agent-v2-2': 'basic' });
  });

  it('pods without an ordinal keep a configured tier they hold, else fill the first tier below target', () => {
    const plan = planTiers([{ name: 'agent-a' }, { name: 'agent-b' }, ...pods(0)], tiers, 'standard', new Map([['agent-b', 'basic']]));
    expect(Object.fromEntries(plan)).toEqual({ 'voice-agent-0': 'gold', 'agent-b': 'basic', 'agent-a': 'standard' });
  });
});

describe('buildChainRules', () => {
  it('gives the SPEC chains; gold only for gold and dedicated', () => {
    const rules = buildChainRules(tiers, ['standard', 'overflow', 'basic']);
    expect(rules.byTier.gold).toEqual(['gold', 'standard', 'overflow', 'basic']);
    expect(rules.byTier.dedicated).toEqual(['gold', 'standard', 'overflow', 'basic']);
    expect(rules.byTier.basic).toEqual(['basic', 'standard', 'overflow']);
    expect(rules.byTier.standard).toEqual(['standard', 'overflow', 'basic']);
    expect(rules.default).toEqual(['standard', 'overflow', 'basic']);
    expect(Object.entries(rules.byTier).filter(([tier, chain]) => chain.includes('gold') && tier !== 'gold' && tier !== 'dedicated')).toEqual([]);
  });
});

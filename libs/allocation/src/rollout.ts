/**
 * Versioned agent fleets (SPEC 12): the rollout document an operator PUTs and
 * the allocation script draws from. Validated here, once, for every writer
 * (admin's PUT, later promote and rollback); the Lua script only numbers and
 * stores what passed.
 */

export type RolloutAssignment = 'random' | 'sticky_by_caller';

export interface RolloutTarget {
  version: string;
  percent: number;
}

export interface RolloutGuardrail {
  /** Points by which the canary's connect-failure rate may exceed the stable version's. */
  max_excess_pp: number;
  /** Canary calls with a known outcome before the guardrail judges. */
  min_calls: number;
}

export interface RolloutSpec {
  targets: RolloutTarget[];
  assignment: RolloutAssignment;
  /** null = no guardrail. */
  guardrail: RolloutGuardrail | null;
}

/** A stored revision (rollout:live, rollout:revisions). */
export interface RolloutRevision extends RolloutSpec {
  revision: number;
  previous: number | null;
  at: number;
  reason: string;
}

export const MAX_ROLLOUT_VERSIONS = 5;
export const ROLLOUT_ASSIGNMENTS: readonly RolloutAssignment[] = ['random', 'sticky_by_caller'];
/** A Kubernetes label value (what VERSION_LABEL holds): '' or up to 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends. */
const LABEL_VALUE = /^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

export type RolloutParse = { ok: true; rollout: RolloutSpec } | { ok: false; code: string; message: string };

const fail = (code: string, message: string): RolloutParse => ({ ok: false, code, message });
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Checks a PUT body: percents are integers 0-100 summing to 100, 1 to 5 distinct versions (a percent of 0 is allowed). */
export function parseRollout(body: unknown): RolloutParse {
  if (!isObject(body)) return fail('INVALID_BODY', 'body must be a JSON object {"targets","assignment","guardrail"}');
  const unknownField = Object.keys(body).find((key) => !['targets', 'assignment', 'guardrail'].includes(key));
  if (unknownField !== undefined) return fail('INVALID_BODY', `unknown field ${JSON.stringify(unknownField)}`);
  const { targets, assignment = 'random', guardrail = null } = body;
  if (!Array.isArray(targets) || targets.length < 1 || targets.length > MAX_ROLLOUT_VERSIONS) {
    return fail('INVALID_TARGETS', `targets must be an array of 1 to ${MAX_ROLLOUT_VERSIONS} {"version","percent"}`);
  }
  const parsed: RolloutTarget[] = [];
  const seen = new Set<string>();
  for (const target of targets) {
    if (!isObject(target) || Object.keys(target).some((key) => key !== 'version' && key !== 'percent')) {
      return fail('INVALID_TARGETS', 'each target must be {"version","percent"}');
    }
    const { version, percent } = target;
    if (typeof version !== 'string' || !LABEL_VALUE.test(version)) {
      return fail('INVALID_VERSION', 'version must be a Kubernetes label value (up to 63 characters of A-Z a-z 0-9 - _ ., alphanumeric at both ends; "" = pods without the label)');
    }
    if (seen.has(version)) return fail('DUPLICATE_VERSION', `version ${JSON.stringify(version)} is listed twice`);
    seen.add(version);
    if (typeof percent !== 'number' || !Number.isInteger(percent) || percent < 0 || percent > 100) {
      return fail('INVALID_PERCENT', 'percent must be an integer from 0 to 100');
    }
    parsed.push({ version, percent });
  }
  const total = parsed.reduce((sum, target) => sum + target.percent, 0);
  if (total !== 100) return fail('PERCENT_SUM', `percents must sum to 100 (they sum to ${total})`);
  if (typeof assignment !== 'string' || !(ROLLOUT_ASSIGNMENTS as readonly string[]).includes(assignment)) {
    return fail('INVALID_ASSIGNMENT', 'assignment must be "random" or "sticky_by_caller"');
  }
  let checkedGuardrail: RolloutGuardrail | null = null;
  if (guardrail !== null) {
    if (!isObject(guardrail) || Object.keys(guardrail).some((key) => key !== 'max_excess_pp' && key !== 'min_calls')) {
      return fail('INVALID_GUARDRAIL', 'guardrail must be {"max_excess_pp","min_calls"} or null');
    }
    const { max_excess_pp: maxExcess, min_calls: minCalls } = guardrail;
    if (typeof maxExcess !== 'number' || !Number.isFinite(maxExcess) || maxExcess < 0 || maxExcess > 100) {
      return fail('INVALID_GUARDRAIL', 'guardrail.max_excess_pp must be a number of points from 0 to 100');
    }
    if (typeof minCalls !== 'number' || !Number.isInteger(minCalls) || minCalls < 1 || minCalls > 1_000_000) {
      return fail('INVALID_GUARDRAIL', 'guardrail.min_calls must be an integer from 1 to 1000000');
    }
    checkedGuardrail = { max_excess_pp: maxExcess, min_calls: minCalls };
  }
  return { ok: true, rollout: { targets: parsed, assignment: assignment as RolloutAssignment, guardrail: checkedGuardrail } };
}

/** The live revision as stored, or null (none, or a document this version cannot read). */
export function parseStoredRollout(raw: string | null): RolloutRevision | null {
  if (raw === null) return null;
  try {
    const value = JSON.parse(raw) as RolloutRevision;
    return isObject(value) && Array.isArray(value.targets) && typeof value.revision === 'number' ? value : null;
  } catch {
    return null;
  }
}

/** Known outcomes of one version's calls allocated under one revision (rollout:stats guard:{revision}:* fields). */
export interface GuardrailOutcomes {
  connected: number;
  connect_timeouts: number;
}

export interface GuardrailCanary {
  version: string;
  /** Calls with a known outcome (connected, or released with connect_timeout). */
  known: number;
  /** connect_timeout releases per known outcome, 0-1 (null = no known outcome yet). */
  failure_rate: number | null;
  /** Points by which its failure rate exceeds the stable version's (null = not judged yet). */
  excess_pp: number | null;
}

/**
 * What the guardrail makes of the live revision (SPEC 12):
 * - `off`: no rollout or no guardrail configured;
 * - `held`: the live revision is the guardrail's own rollback; it judges
 *   nothing more until an operator sets a new split (a second rollback would
 *   return to the failed split);
 * - `watching`: judging; `tripped`: a canary crossed the threshold (the
 *   reconciler's guardrail job rolls back).
 */
export interface GuardrailVerdict {
  state: 'off' | 'held' | 'watching' | 'tripped';
  revision: number | null;
  stable: string | null;
  stable_failure_rate: number | null;
  canaries: GuardrailCanary[];
  /** The first canary over the threshold (state tripped). */
  failing: string | null;
}

/** The `reason` the guardrail writes on its rollback revision; `held` is read from it. */
export const GUARDRAIL_REASON_PREFIX = 'guardrail:';

/** The stats hash fields the guardrail reads for one revision. */
export function guardrailFields(revision: number): [string, string] {
  return [`guard:${revision}:connected`, `guard:${revision}:connect_timeouts`];
}

const rate = (outcomes: GuardrailOutcomes | undefined): number | null => {
  const known = (outcomes?.connected ?? 0) + (outcomes?.connect_timeouts ?? 0);
  return known === 0 ? null : (outcomes?.connect_timeouts ?? 0) / known;
};

/**
 * Judges the live revision. The stable version is the target with the
 * largest percent (the first listed on a tie); every other target with a
 * percent above 0 is a canary. A canary is judged once it has `min_calls`
 * known outcomes under this revision; a stable version with none yet counts
 * as failing 0 % of its calls (so a canary failing alone still trips).
 */
export function judgeGuardrail(live: RolloutRevision | null, outcomes: Record<string, GuardrailOutcomes>): GuardrailVerdict {
  const verdict: GuardrailVerdict = { state: 'off', revision: live?.revision ?? null, stable: null, stable_failure_rate: null, canaries: [], failing: null };
  if (!live || live.targets.length === 0) return verdict;
  const stable = live.targets.reduce((best, target) => (target.percent > best.percent ? target : best), live.targets[0]);
  verdict.stable = stable.version;
  verdict.stable_failure_rate = rate(outcomes[stable.version]);
  // Held whatever guardrail the split it returned to carries (often none).
  if (typeof live.reason === 'string' && live.reason.startsWith(GUARDRAIL_REASON_PREFIX)) {
    verdict.state = 'held';
    return verdict;
  }
  if (!live.guardrail) return { ...verdict, stable: null, stable_failure_rate: null };
  verdict.state = 'watching';
  const baseline = verdict.stable_failure_rate ?? 0;
  for (const target of live.targets) {
    if (target.version === stable.version || target.percent === 0) continue;
    const own = outcomes[target.version];
    const known = (own?.connected ?? 0) + (own?.connect_timeouts ?? 0);
    const failureRate = rate(own);
    const judged = known >= live.guardrail.min_calls && failureRate !== null;
    const excess = judged ? Math.round((failureRate - baseline) * 10000) / 100 : null;
    verdict.canaries.push({ version: target.version, known, failure_rate: failureRate, excess_pp: excess });
    if (excess !== null && excess > live.guardrail.max_excess_pp && verdict.failing === null) {
      verdict.state = 'tripped';
      verdict.failing = target.version;
    }
  }
  return verdict;
}

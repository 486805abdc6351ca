/**
 * The subset of Kubernetes label selectors we use: `k=v`, `k==v`, `k!=v`,
 * `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma-separated (AND).
 */
export type LabelMatcher = (labels: Record<string, string>) => boolean;

export function parseLabelSelector(selector: string | null | undefined): LabelMatcher {
  const requirements: LabelMatcher[] = [];
  for (const term of splitTerms(selector ?? '')) {
    const set = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    if (set) {
      const [, key, op, values] = set;
      const allowed = new Set(values.split(',').map((value) => value.trim()));
      requirements.push(op === 'in' ? (labels) => key in labels && allowed.has(labels[key]) : (labels) => !(key in labels && allowed.has(labels[key])));
      continue;
    }
    const comparison = /^([^\s!=]+)\s*(==|=|!=)\s*(\S*)$/.exec(term);
    if (comparison) {
      const [, key, op, value] = comparison;
      requirements.push(op === '!=' ? (labels) => labels[key] !== value : (labels) => labels[key] === value);
      continue;
    }
    if (term.startsWith('!')) {
      const key = term.slice(1).trim();
      requirements.push((labels) => !(key in labels));
      continue;
    }
    requirements.push((labels) => term in labels);
  }
  return (labels) => requirements.every((requirement) => requirement(labels));
}

/** Splits on commas that are not inside a `( … )` value list. */
function splitTerms(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let current = '';
  for (const char of selector) {
    if (char === '(') depth += 1;
    if (char === ')') depth -= 1;
    if (char === ',' && depth === 0) {
      terms.push(current);
      current = '';
    } else current += char;
  }
  terms.push(current);
  return terms.map((term) => term.trim()).filter(Boolean);
}

/** `metadata.name=x` / `metadata.namespace=y` field selectors (what kubectl's wait uses). */
export function parseFieldSelector(selector: string | null | undefined): (object: { metadata: { name: string; namespace?: string } }) => boolean {
  const checks = splitTerms(selector ?? '').map((term) => {
    const match = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!match) return () => true;
    const [, field, op, value] = match;
    const read = (object: { metadata: { name: string; namespace?: string } }) =>
      field === 'metadata.name' ? object.metadata.name : field === 'metadata.namespace' ? object.metadata.namespace : undefined;
    return op === '!=' ? (object: { metadata: { name: string; namespace?: string } }) => read(object) !== value : (object: { metadata: { name: string; namespace?: string } }) => read(object) === value;
  });
  return (object) => checks.every((check) => check(object));
}

import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Compares two secrets without leaking, through timing, where they differ or
 * how long the expected one is: both sides are hashed to 32 bytes first, so
 * `timingSafeEqual` always sees equal lengths.
 */
export function constantTimeEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/**
 * True when `presented` equals any of `expected`. Every candidate is compared
 * (no early exit), so the time taken does not reveal which one matched.
 */
export function matchesAny(presented: readonly string[], expected: readonly string[]): boolean {
  let matched = false;
  for (const candidate of presented) {
    for (const value of expected) {
      if (constantTimeEqual(candidate, value)) matched = true;
    }
  }
  return matched;
}

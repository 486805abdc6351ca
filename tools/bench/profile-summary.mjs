// Summarizes `node --cpu-prof` output: self time by where the code lives
// (ours, NestJS, Fastify, OpenTelemetry, ioredis, Node internals, GC, idle),
// then the top functions. Usage: node tools/bench/profile-summary.mjs DIR|FILE [top]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const target = process.argv[2];
const top = Number(process.argv[3] ?? 25);
const file = statSync(target).isDirectory()
  ? readdirSync(target).filter((name) => name.endsWith('.cpuprofile')).map((name) => join(target, name)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]
  : target;
const profile = JSON.parse(readFileSync(file, 'utf8'));

const self = new Map();
const total = profile.samples.length;
const counts = new Map();
for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1);

const area = (url, name) => {
  if (name === '(idle)' || name === '(program)' || name === '(garbage collector)') return name;
  if (!url) return '(native/vm)';
  if (url.startsWith('node:')) return 'node internals';
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (match) {
    const pkg = match[1];
    if (pkg.startsWith('@smart-router/')) return 'ours';
    if (pkg.startsWith('@nestjs/')) return 'nestjs';
    if (pkg.startsWith('@opentelemetry/')) return 'opentelemetry';
    if (pkg === 'fastify' || pkg.startsWith('@fastify/') || ['find-my-way', 'light-my-request', 'avvio', 'fast-json-stringify', 'ajv', 'secure-json-parse', 'pino'].includes(pkg)) return 'fastify';
    if (pkg === 'ioredis' || pkg === 'redis-parser' || pkg === 'denque' || pkg === 'cluster-key-slot') return 'ioredis';
    if (pkg === 'rxjs') return 'rxjs';
    return pkg;
  }
  if (url.includes('/dist/')) return 'ours';
  return url;
};

const byArea = new Map();
const byFunction = new Map();
for (const node of profile.nodes) {
  const n = counts.get(node.id) ?? 0;
  if (!n) continue;
  const { url, functionName, lineNumber } = node.callFrame;
  const where = area(url, functionName);
  byArea.set(where, (byArea.get(where) ?? 0) + n);
  const key = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${lineNumber + 1}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + n);
}
const busy = total - (byArea.get('(idle)') ?? 0);
const pct = (n, of) => `${((100 * n) / of).toFixed(1)}%`;
console.log(`${file}: ${total} samples, ${pct(busy, total)} busy`);
console.log('\n| where | share of busy time |\n|---|---|');
for (const [where, n] of [...byArea].filter(([w]) => w !== '(idle)').sort((a, b) => b[1] - a[1])) console.log(`| ${where} | ${pct(n, busy)} |`);
console.log(`\ntop ${top} functions by self time (share of busy):`);
for (const [key, n] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(n, busy).padStart(6)}  ${key}`);

// Micro-benchmark behind the schema choice (README, Decisions): the allocate
// body validated by the old hand-written parser versus the TypeBox schema
// compiled by Fastify's Ajv, and the answer serialized by JSON.stringify
// versus fast-json-stringify compiled from the response schema.
// Usage: node tools/bench/schema-bench.mjs   (after a build)
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'node_modules', 'package.json'));
const Ajv = require('ajv');
const fastJson = require('fast-json-stringify');
const contract = require(join(root, 'dist', 'node_modules', '@smart-router', 'api-contract'));

const CALL_SID = /^[A-Za-z0-9._:-]{1,128}$/;
// The parser allocation-api had before the route schemas (allocation.dto.ts).
function handParse(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('INVALID_BODY');
  const sid = body.call_sid;
  if (sid === undefined || sid === null || sid === '') throw new Error('CALL_SID_REQUIRED');
  if (typeof sid !== 'string' || !CALL_SID.test(sid)) throw new Error('INVALID_CALL_SID');
  const merchant = body.merchant_id ?? body.reseller_id;
  if (merchant !== undefined && merchant !== null && merchant !== '' && (typeof merchant !== 'string' || !CALL_SID.test(merchant))) throw new Error('INVALID_MERCHANT_ID');
  const provider = body.provider;
  if (provider !== undefined && provider !== null && (typeof provider !== 'string' || provider.length > 64)) throw new Error('INVALID_FIELD');
  return { callSid: sid, merchantId: merchant ?? '', provider: provider ?? '', metadata: '' };
}

const ajv = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: true, allErrors: false, keywords: ['x-errors'] });
const validate = ajv.compile(JSON.parse(JSON.stringify(contract.AllocateRequest)));
const serialize = fastJson(JSON.parse(JSON.stringify(contract.AllocateResponse)));
const answer = { success: true, pod_name: 'voice-agent-12', ws_url: 'ws://127.0.0.1:8000/ws/pod/voice-agent-12/CA0123456789abcdef', source_pool: 'pool:standard', was_existing: false };

function time(name, work, n = 2_000_000) {
  for (let i = 0; i < 100_000; i += 1) work(i);
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i += 1) work(i);
  const ns = Number(process.hrtime.bigint() - started) / n;
  console.log(`| ${name} | ${ns.toFixed(0)} ns |`);
  return ns;
}

console.log('| operation | per call |\n|---|---|');
const bodies = Array.from({ length: 1024 }, (_, i) => ({ call_sid: `CA${i}abcdef0123`, merchant_id: 'merchant-1', provider: 'twilio' }));
time('validate allocate body: hand-written parser', (i) => handParse(bodies[i & 1023]));
time('validate allocate body: TypeBox schema, Ajv (as Fastify compiles it)', (i) => { if (!validate(bodies[i & 1023])) throw new Error('invalid'); });
time('serialize allocate answer: JSON.stringify', () => JSON.stringify(answer));
time('serialize allocate answer: fast-json-stringify from the schema', () => serialize(answer));

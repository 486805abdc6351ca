import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort, sharedRedisUrl, uniquePrefix, waitFor } from '@smart-router/testing';

/**
 * SPEC 10.1 "fail closed", on the built apps as deployed (`node dist/apps/<app>/src/main.js`,
 * what the Docker image runs): without the credentials their routes need and without
 * ALLOW_UNAUTHENTICATED an app exits non-zero with one line naming the variable; with
 * the flag it starts, says in its log which routes are open, and is ready.
 */

const ROOT = join(__dirname, '..', '..', '..');

interface Run {
  code: number | null;
  lines: string[];
}

function baseEnv(port: number): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '',
    REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: uniquePrefix('fc'), HTTP_PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info',
  };
}

function start(app: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'apps', app, 'src', 'main.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<Run>((resolve) => child.once('close', (code) => resolve({ code, lines: output.split('\n').filter((line) => line.trim() !== '') })));
  return { child, exited, output: () => output };
}

/** Runs an app that must refuse to start; kills it if it starts after all. */
async function refusal(app: string, env: Record<string, string>): Promise<Run> {
  const run = start(app, env);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), 20000);
  try {
    return await run.exited;
  } finally {
    clearTimeout(timer);
  }
}

// Each case is a separate process, all started at once: loading an app is most of the cost.
describe('the built apps fail closed', () => {
  it('exit non-zero with one line naming the variable, without credentials or with a bad value', async () => {
    const cases: [string, string, Record<string, string>][] = [
      ['allocation-api', 'API_TOKENS', {}],
      ['admin', 'ADMIN_OPERATOR_TOKENS', {}],
      ['webhooks', 'TWILIO_AUTH_TOKENS', {}],
      ['webhooks', 'PUBLIC_BASE_URL', { TWILIO_AUTH_TOKENS: 't', PLIVO_AUTH_TOKENS: 'p', EXOTEL_CREDENTIALS: 'e:x' }],
      ['webhooks', 'PROVIDERS', { PROVIDERS: 'twilio,sms', ALLOW_UNAUTHENTICATED: 'true' }],
    ];
    const runs = await Promise.all(cases.map(async ([app, , extra]) => refusal(app, { ...baseEnv(await freePort()), ...extra })));
    cases.forEach(([app, variable], index) => {
      const { code, lines } = runs[index];
      expect({ app, variable, code, lines }).toEqual({ app, variable, code: 1, lines: [expect.stringContaining(`${app}: failed to start: invalid configuration: ${variable} `)] });
    });
  }, 40000);

  it('a malformed REDIS_URL is named, its password never printed', async () => {
    const run = await refusal('allocation-api', { ...baseEnv(await freePort()), ALLOW_UNAUTHENTICATED: 'true', REDIS_URL: 'redis://default:s3cret-pw@[redis:6379' });
    expect(run.code).toBe(1);
    expect(run.lines).toEqual(['allocation-api: failed to start: invalid configuration: REDIS_URL must be a URL, got "redis://***@[redis:6379"']);
  }, 30000);

  it('start with ALLOW_UNAUTHENTICATED=true, ready, each saying in one warn line what is open', async () => {
    const cases: [string, RegExp][] = [
      ['allocation-api', /allocation-api is OPEN \(ALLOW_UNAUTHENTICATED=true\): POST \/api\/v1\/allocate/],
      ['admin', /admin is OPEN \(ALLOW_UNAUTHENTICATED=true\): every admin route/],
      ['webhooks', /webhooks are OPEN \(ALLOW_UNAUTHENTICATED=true\): \/api\/v1\/twilio\/\.\.\..*\(TWILIO_AUTH_TOKENS, PLIVO_AUTH_TOKENS, EXOTEL_CREDENTIALS empty\)/],
    ];
    const runs = await Promise.all(cases.map(async ([app]) => {
      const port = await freePort();
      return { app, port, run: start(app, { ...baseEnv(port), ALLOW_UNAUTHENTICATED: 'true' }) };
    }));
    try {
      for (const [index, { app, port, run }] of runs.entries()) {
        await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/ready`).catch(() => null))?.status === 200, { timeoutMs: 30000, what: `${app} ready` });
        expect(await (await fetch(`http://127.0.0.1:${port}/ready`)).json()).toEqual({ status: 'up' });
        const warnings = run.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: string; msg: string }).filter((line) => line.level === 'warn');
        expect({ app, warnings }).toEqual({ app, warnings: [expect.objectContaining({ msg: expect.stringMatching(cases[index][1]) })] });
      }
    } finally {
      for (const { run } of runs) run.child.kill('SIGTERM');
      await Promise.all(runs.map(({ run }) => run.exited));
    }
  }, 60000);
});

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import puppeteer, { Browser, Page } from 'puppeteer-core';
import { waitFor } from '@smart-router/testing';
import { FREE_PORTS, LocalStack } from './stack';

/**
 * SPEC section 9.4 in a real browser: Debian's headless Chromium driven by
 * puppeteer-core against a running stack, through the gateway. Screenshots
 * land in .local/artifacts/ (gitignored) for a human to look at.
 */


const ROOT = join(__dirname, '..', '..', '..');
const ARTIFACTS = join(ROOT, '.local', 'artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const OPERATOR = 'op-dashboard-secret';
const VIEWER = 'view-dashboard-secret';
const TIERS = ['gold', 'standard', 'basic'];
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];

let stack: LocalStack;
let browser: Browser;
let page: Page;
let profile: string;

async function allocate(callSid: string, merchantId?: string) {
  const response = await fetch(`${stack.url('gateway')}/api/v1/allocate`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call_sid: callSid, merchant_id: merchantId }),
  });
  expect(response.status).toBe(200);
  return (await response.json()) as { pod_name: string };
}

async function signIn(token: string) {
  await page.goto(`${stack.url('gateway')}/dashboard/`, { waitUntil: 'domcontentloaded' });
  await page.evaluate('sessionStorage.clear()');
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#token-form:not([hidden])', { timeout: 10000 });
  await page.type('#token', token);
  await page.click('#token-form button[type=submit]');
  await page.waitForFunction("document.body.dataset.live === '1' && document.querySelectorAll('[data-tier]').length > 0", { timeout: 10000 });
}

const podState = (pod: string) => page.$eval(`tr[data-pod="${pod}"]`, (row) => row.getAttribute('data-state') ?? '');

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-dashboard-')),
    env: { ADMIN_OPERATOR_TOKENS: OPERATOR, ADMIN_VIEWER_TOKENS: VIEWER },
  });
  await waitFor(async () => {
    const response = await fetch(`${stack.url('admin')}/api/v1/status`, { headers: { authorization: `Bearer ${VIEWER}` } });
    const status = (await response.json()) as { pods?: number };
    return status.pods === PODS.length;
  }, { timeoutMs: 30000, what: 'every pod in the pools' });
  profile = mkdtempSync(join(tmpdir(), 'sr-chromium-'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 1000 });
}, 90000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  if (profile) rmSync(profile, { recursive: true, force: true });
  await stack?.stop();
}, 60000);

describe('the SRE dashboard in a real browser', () => {
  it('shows every tier and pod read-only to a viewer token', async () => {
    await signIn(VIEWER);
    const tiers = await page.$$eval('[data-tier]', (nodes) => nodes.map((node) => node.getAttribute('data-tier')));
    expect(tiers.sort()).toEqual([...TIERS].sort());
    const pods = await page.$$eval('tr[data-pod]', (rows) => rows.map((row) => row.getAttribute('data-pod')));
    expect(pods.sort()).toEqual(PODS);
    expect(await page.$$('button[data-action]')).toHaveLength(0);
    expect(await page.$eval('#role', (node) => node.textContent)).toBe('viewer token');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-viewer.png'), fullPage: true });
  }, 60000);

  it('drains from the page: the pod shows as draining within a second, and undrains', async () => {
    await signIn(OPERATOR);
    expect(await page.$$('button[data-action="drain"]')).toHaveLength(PODS.length);
    expect(await podState('voice-agent-3')).toBe('available');
    const clicked = Date.now();
    await page.click('button[data-pod="voice-agent-3"][data-action="drain"]');
    await page.waitForSelector('tr[data-pod="voice-agent-3"][data-state="draining"]', { timeout: 5000 });
    const elapsed = Date.now() - clicked;
    expect(elapsed).toBeLessThan(1000);
    // The state is real, not only on the page.
    const status = (await (await fetch(`${stack.url('admin')}/api/v1/status`, { headers: { authorization: `Bearer ${VIEWER}` } })).json()) as { draining: string[] };
    expect(status.draining).toEqual(['voice-agent-3']);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-drained.png'), fullPage: true });
    await page.click('button[data-pod="voice-agent-3"][data-action="undrain"]');
    await page.waitForSelector('tr[data-pod="voice-agent-3"][data-state="available"]', { timeout: 5000 });
  }, 60000);

  it('shows an allocation made elsewhere live, without a reload', async () => {
    await signIn(OPERATOR);
    // A marker that a reload would wipe.
    await page.evaluate('window.notReloaded = true');
    const { pod_name: exclusive } = await allocate(`dash-live-${Date.now()}`);
    const shared = `dash-shared-${Date.now()}`;
    await fetch(`${stack.url('gateway')}/api/v1/admin/merchants/dash-basic`, {
      method: 'PUT', headers: { 'content-type': 'application/json', authorization: `Bearer ${OPERATOR}` }, body: JSON.stringify({ tier: 'basic' }),
    });
    const { pod_name: sharedPod } = await allocate(shared, 'dash-basic');
    await page.waitForSelector(`tr[data-type="call.allocated"] td:nth-child(3)`, { timeout: 5000 });
    await page.waitForFunction(`[...document.querySelectorAll('#events tr')].some((row) => row.textContent.includes(${JSON.stringify(shared)}))`, { timeout: 5000 });
    await page.waitForSelector(`tr[data-pod="${exclusive}"][data-state="busy"]`, { timeout: 5000 });
    await page.waitForFunction(`document.querySelector('tr[data-pod="${sharedPod}"] td.calls')?.textContent === '1/3'`, { timeout: 5000 });
    expect(await page.evaluate('window.notReloaded')).toBe(true);
    expect(await page.$eval('[data-card="active-calls"] .value', (node) => node.textContent)).toBe('2');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-live.png'), fullPage: true });
  }, 60000);

  it('shows the rollout panel: the split, each version and the guardrail (SPEC 12)', async () => {
    const put = await fetch(`${stack.url('admin')}/api/v1/admin/rollout`, {
      method: 'PUT', headers: { authorization: `Bearer ${OPERATOR}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: [{ version: '', percent: 100 }], guardrail: { max_excess_pp: 5, min_calls: 100 } }),
    });
    expect(put.status).toBe(200);
    // A call allocated under the split and released: the version's releases by reason (SPEC 12) count it.
    const sid = `dash-rollout-${Date.now()}`;
    await allocate(sid);
    const released = await fetch(`${stack.url('gateway')}/api/v1/release`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call_sid: sid, reason: 'completed' }) });
    expect(released.status).toBe(200);
    await signIn(VIEWER);
    await page.waitForSelector('#rollout tr[data-version=""]', { timeout: 10000 });
    await page.waitForFunction(`document.querySelector('#rollout tr[data-version=""] td.releases')?.textContent === 'completed 1'`, { timeout: 10000 });
    expect(await page.$eval('#rollout tr[data-version=""]', (row) => [...row.querySelectorAll('td')].slice(0, 2).map((cell) => cell.textContent))).toEqual(['(no label)', '100 %']);
    expect(await page.$eval('#rollout-summary [data-guardrail]', (node) => node.getAttribute('data-guardrail'))).toBe('watching');
    expect(await page.$eval('#rollout-summary', (node) => node.textContent)).toMatch(/^revision \d+, random; guardrail watching/);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-rollout.png'), fullPage: true });
  }, 60000);

  it('stops in reverse dependency order: apps, then the watcher, the reconciler, and Redis last', async () => {
    const logDir = dirname(stack.kubeconfigPath);
    await browser.close();
    await stack.stop();
    const position = (name: string) => stack.stopped.indexOf(name);
    for (const app of ['admin', 'webhooks', 'allocation-api']) expect(position(app)).toBeLessThan(position('pod-watcher'));
    expect(position('pod-watcher')).toBeLessThan(position('reconciler'));
    expect(position('reconciler')).toBeLessThan(position('redis'));
    // The reconciler never saw Redis go away under it.
    expect(readFileSync(join(logDir, 'reconciler.log'), 'utf8')).not.toMatch(/ECONNREFUSED|Connection is closed/);
  }, 60000);
});

import { DEFAULT_RESTART_POLICY, Supervisor } from './supervisor';

const KILLED = { code: null, signal: 'SIGKILL' as const };
const FAILED = { code: 1, signal: null };

describe('restart policy of the local stack', () => {
  it('backs off from 0.5 s doubling to 10 s, and names the app and how it died', () => {
    const supervisor = new Supervisor({ ...DEFAULT_RESTART_POLICY, crashLoopLimit: 100 });
    const delays: number[] = [];
    let now = 0;
    for (let crash = 0; crash < 7; crash += 1) {
      const decision = supervisor.exited('allocation-api', KILLED, 1000, (now += 1000));
      expect(decision.message).toMatch(/^stack: allocation-api died \(killed by SIGKILL\) after 1\.0 s; restarting it in /);
      if (decision.restart) delays.push(decision.delayMs);
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 10000, 10000]);
    expect(supervisor.exited('webhooks', FAILED, 10, now).message).toMatch(/^stack: webhooks died \(exit code 1\)/);
  });

  it('starts the backoff over after a minute of uptime', () => {
    const supervisor = new Supervisor(DEFAULT_RESTART_POLICY);
    expect(supervisor.exited('admin', KILLED, 100, 0)).toMatchObject({ restart: true, delayMs: 500 });
    expect(supervisor.exited('admin', KILLED, 100, 1000)).toMatchObject({ restart: true, delayMs: 1000 });
    expect(supervisor.exited('admin', KILLED, 60_000, 70_000)).toMatchObject({ restart: true, delayMs: 500 });
  });

  it('leaves an app that crashes 5 times within a minute down, and says so', () => {
    const supervisor = new Supervisor(DEFAULT_RESTART_POLICY);
    for (let crash = 1; crash <= 4; crash += 1) expect(supervisor.exited('reconciler', FAILED, 200, crash * 1000).restart).toBe(true);
    const fifth = supervisor.exited('reconciler', FAILED, 200, 5000);
    expect(fifth).toEqual({ restart: false, message: 'stack: reconciler died (exit code 1); it crashed 5 times within 60 s, so it is NOT restarted again (see reconciler.log)' });
    // Other apps keep their own count.
    expect(supervisor.exited('admin', FAILED, 200, 5000).restart).toBe(true);
  });

  it('counts only crashes inside the window, and forgets an app started afresh', () => {
    const supervisor = new Supervisor(DEFAULT_RESTART_POLICY);
    for (let crash = 0; crash < 10; crash += 1) expect(supervisor.exited('webhooks', KILLED, 5_000, crash * 20_000).restart).toBe(true);
    for (let crash = 1; crash <= 4; crash += 1) supervisor.exited('admin', KILLED, 100, crash);
    supervisor.forget('admin');
    expect(supervisor.exited('admin', KILLED, 100, 10)).toMatchObject({ restart: true, delayMs: 500 });
  });
});

import Redis from 'ioredis';
import { sharedRedisUrl, uniquePrefix, waitFor } from '@smart-router/testing';
import { WaitWakeups } from './wait-wakeups';

/** The wake-up side of waiting, on a real redis-server: pub/sub, and the re-check after a reconnect. */
describe('WaitWakeups', () => {
  let wakeups: WaitWakeups;
  let publisher: Redis;
  let channel: string;
  let subscriber: Redis | null = null;

  beforeEach(() => {
    channel = `${uniquePrefix()}wait:wake`;
    publisher = new Redis(sharedRedisUrl(), { maxRetriesPerRequest: 1 });
    wakeups = new WaitWakeups(() => {
      subscriber = new Redis(sharedRedisUrl(), { connectionName: `wakeups-${process.pid}-${channel.length}-${Date.now()}`, retryStrategy: () => 20 });
      subscriber.on('error', () => undefined);
      return subscriber;
    }, channel);
  });
  afterEach(async () => {
    await wakeups.close();
    await publisher.quit();
  });

  it('wakes the ticket of the published call_sid at once, keeps a wake-up that came between two waits, and ignores others', async () => {
    await wakeups.ready(1000);
    const ticket = wakeups.register('CA-1');
    const other = wakeups.register('CA-2');
    const started = Date.now();
    const woken = ticket.next(10000);
    await publisher.publish(channel, 'CA-1');
    await woken;
    expect(Date.now() - started).toBeLessThan(2000);
    // Published while nobody waited on the ticket: the next wait returns at once.
    await publisher.publish(channel, 'CA-1');
    await waitFor(async () => {
      const raced = await Promise.race([ticket.next(5).then(() => 'woken'), new Promise((resolve) => setTimeout(() => resolve('late'), 50))]);
      return raced === 'woken';
    }, { what: 'the kept wake-up' });
    const timer = Date.now();
    await other.next(100);
    expect(Date.now() - timer).toBeGreaterThanOrEqual(90);
    expect(wakeups.size).toBe(2);
    ticket.dispose();
    other.dispose();
    expect(wakeups.size).toBe(0);
  });

  it('after the subscriber reconnects (messages may be lost), every waiting request re-checks once', async () => {
    await wakeups.ready(1000);
    const ticket = wakeups.register('CA-lost');
    const started = Date.now();
    const woken = ticket.next(20000);
    const name = subscriber!.options.connectionName!;
    const line = String(await publisher.client('LIST')).split('\n').find((entry) => entry.includes(` name=${name} `))!;
    await publisher.client('KILL', 'ID', /\bid=(\d+)/.exec(line)![1]);
    await woken;
    expect(Date.now() - started).toBeLessThan(10000);
    ticket.dispose();
  });
});

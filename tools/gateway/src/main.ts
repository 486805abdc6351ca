import { readGatewayConfig } from './gateway.config';
import { Gateway } from './gateway';

/**
 * The local gateway as its own process: `npm start` runs it as a supervised
 * child (SPEC 10.2: no listener that faces clients runs in the process that
 * restarts the others). compose and Kubernetes use nginx instead.
 */
async function main(): Promise<void> {
  const options = readGatewayConfig();
  const gateway = new Gateway(options);
  const port = await gateway.start();
  process.stdout.write(`${JSON.stringify({ level: 'info', service: 'gateway', message: 'gateway listening', url: `http://${options.host}:${port}`, upstreams: options.upstreams })}\n`);
  const stop = () => {
    // Proxied WebSockets are not the HTTP server's to close: do not wait for them past 2 s.
    setTimeout(() => process.exit(0), 2000).unref();
    void gateway.stop().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`gateway failed: ${(error as Error)?.message ?? String(error)}\n`);
    process.exit(1);
  });
}

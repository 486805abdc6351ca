import 'reflect-metadata';
import { Env, EnvReader } from '@smart-router/config';
import { runMain, startHttpApp } from '@smart-router/http';
import { PoolMetrics } from '@smart-router/pool-state';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { readAdminConfig } from './admin.config';
import { AppModule } from './app.module';

export async function bootstrap(env: Env = process.env) {
  const config = readAdminConfig(new EnvReader(env));
  const logger = new JsonLogger('admin', config.common.logLevel);
  const telemetry = Telemetry.start('admin', config.otlpEndpoint);
  const app = await startHttpApp({
    module: AppModule.register(config, telemetry),
    logger,
    host: config.common.host,
    port: config.port,
    countError: (status, code) => app.get(PoolMetrics).httpError(status, code),
    exportSpans: telemetry.exportsSpans,
    trustedProxies: config.common.trustedProxies,
  });
  const auth = config.operatorTokens.length + config.viewerTokens.length > 0 ? 'bearer tokens required (viewer: GET, operator: changes)' : 'OPEN: no ADMIN_*_TOKENS configured';
  logger.info('admin listening', { url: `http://${config.common.host}:${config.port}`, auth });
  if (config.operatorTokens.length + config.viewerTokens.length === 0) {
    // Reached only in open mode (SPEC 10.1): without the flag the config refused to start.
    logger.warn('admin is OPEN (ALLOW_UNAUTHENTICATED=true): every admin route (status, drain/undrain, pods, calls, merchants, tiers, fleet, autoscaler, reconcile, events, dashboard) accepts callers without a token (ADMIN_OPERATOR_TOKENS and ADMIN_VIEWER_TOKENS empty)');
  }
  return app;
}

if (require.main === module) runMain('admin', () => bootstrap());

import { hostname } from 'node:os';
import { EnvReader, RedisSettings, readRedisSettings, readTrustedProxies } from '@smart-router/config';

export interface PodWatcherConfig {
  redis: RedisSettings;
  host: string;
  /** Addresses whose X-Forwarded-* headers are believed (TRUSTED_PROXIES). */
  trustedProxies: string[];
  port: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  namespace: string;
  labelSelector: string;
  /** Path to a kubeconfig; unset = in-cluster service account. */
  kubeconfig?: string;
  leaseName: string;
  identity: string;
  leaseDurationSeconds: number;
  leaseRetryMs: number;
  streamMaxLen: number;
  otlpEndpoint?: string;
}

export function readPodWatcherConfig(env = new EnvReader()): PodWatcherConfig {
  const leaseDurationSeconds = env.int('LEASE_DURATION_SECONDS', 15, { min: 2, max: 300 });
  return {
    redis: readRedisSettings(env),
    host: env.string('HOST', '127.0.0.1'),
    trustedProxies: readTrustedProxies(env),
    port: env.port('HTTP_PORT', 8083),
    logLevel: env.oneOf('LOG_LEVEL', 'info', ['debug', 'info', 'warn', 'error'] as const),
    namespace: env.string('NAMESPACE', 'voice-system'),
    labelSelector: env.string('POD_LABEL_SELECTOR', 'app=voice-agent'),
    kubeconfig: env.optionalString('KUBECONFIG'),
    leaseName: env.string('LEASE_NAME', 'smart-router-pod-watcher'),
    identity: env.string('POD_IDENTITY', `${hostname()}-${process.pid}`),
    leaseDurationSeconds,
    leaseRetryMs: env.int('LEASE_RETRY_MS', Math.max(200, Math.floor((leaseDurationSeconds * 1000) / 5)), { min: 50 }),
    streamMaxLen: env.int('STREAM_MAXLEN', 100000, { min: 100 }),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
  };
}

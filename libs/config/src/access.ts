import { isIP } from 'node:net';
import { ConfigError, EnvReader } from './env';

/**
 * `ALLOW_UNAUTHENTICATED=true` lets an app start with a credential its routes
 * need left empty (SPEC 10.1). It only permits starting: a credential that is
 * configured is always enforced. `npm start` and compose set it; the Docker
 * image and the k8s manifests never do, so a missing secret there stops the app.
 */
export function readAllowUnauthenticated(env: EnvReader): boolean {
  return env.bool('ALLOW_UNAUTHENTICATED', false);
}

/**
 * Fail closed: without open mode, a missing credential stops the app with one
 * line naming the variable (`reason` says what it would leave open).
 */
export function requireCredential(allowUnauthenticated: boolean, variable: string, reason: string): void {
  if (allowUnauthenticated) return;
  throw new ConfigError(variable, `${reason}; set it, or ALLOW_UNAUTHENTICATED=true to run open (local only)`);
}

/**
 * `TRUSTED_PROXIES`: the addresses (IPs or CIDRs) whose X-Forwarded-For/-Proto/-Host
 * are believed, i.e. the gateway or nginx in front of the app. Default none:
 * forwarded headers are ignored and the socket and Host header are used, so a
 * client cannot choose the scheme, host or address the app sees.
 */
export function readTrustedProxies(env: EnvReader): string[] {
  return env.list('TRUSTED_PROXIES').map((entry) => {
    const [address, prefix, extra] = entry.split('/');
    const family = isIP(address);
    const maxPrefix = family === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= maxPrefix);
    if (family === 0 || !prefixOk || extra !== undefined) {
      throw new ConfigError('TRUSTED_PROXIES', `must be comma-separated IP addresses or CIDRs (10.0.0.0/8, ::1/128), got "${entry}"`);
    }
    return entry;
  });
}

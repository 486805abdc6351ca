import { spawnSync } from 'node:child_process';
import { repoPath } from './repository';

/** Where nginx-router's start.sh writes the admin allow-list that nginx.conf includes. */
export const ADMIN_ACCESS_INCLUDE = '/tmp/smart-router/admin-access.conf';

export interface RenderedAllowList {
  /** start.sh's exit status: 0, or non-zero for a value it refuses. */
  status: number | null;
  /** The include nginx would read. */
  text: string;
  stderr: string;
}

/**
 * Runs the router's real start.sh (k8s/base/nginx-router/start.sh --print)
 * with ADMIN_ALLOW_CIDRS set as the ConfigMap would set it: the allow-list
 * offline checks see is the one the pod renders. Undefined = the variable unset.
 */
export function renderAdminAccess(cidrs: string | undefined): RenderedAllowList {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  if (cidrs !== undefined) env.ADMIN_ALLOW_CIDRS = cidrs;
  const result = spawnSync('sh', [repoPath('k8s', 'base', 'nginx-router', 'start.sh'), '--print'], { env, encoding: 'utf8' });
  return { status: result.status, text: result.stdout, stderr: result.stderr };
}

/**
 * Variables `npm start` sets itself for each app (ports, addresses, the simulated
 * cluster); a shell value for them would break the local stack's wiring.
 * REDIS_URL is honoured separately (use that Redis instead of starting one).
 */
const STACK_OWNED = new Set(['REDIS_URL', 'REDIS_PORT', 'HTTP_PORT', 'HOST', 'KUBECONFIG', 'POD_IDENTITY', 'NAMESPACE', 'POD_LABEL_SELECTOR', 'PATH', 'HOME']);
/** Shell plumbing that is not app configuration (npm's own variables, terminal state). */
const NOT_CONFIG = /^(npm_|NODE_|INIT_CWD$|PWD$|OLDPWD$|SHLVL$|_$|TERM|COLORTERM$|SHELL$|USER$|LOGNAME$|LANG$|LC_|SSH_|DISPLAY$|EDITOR$|MAIL$|HOSTNAME$)/;

/**
 * SPEC section 8: a value given in the shell reaches the apps under `npm start`
 * (PUBLIC_BASE_URL for a tunnel to a real Twilio number, tokens, TIER_CONFIG,
 * any variable of the README's configuration table); the stack's own values
 * (the gateway URL for PUBLIC_BASE_URL and VOICE_AGENT_BASE_URL) are only defaults.
 */
export function shellOverrides(env: NodeJS.ProcessEnv): Record<string, string> {
  const overrides: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || value === '' || STACK_OWNED.has(name) || NOT_CONFIG.test(name)) continue;
    if (!/^[A-Z][A-Z0-9_]*$/.test(name)) continue;
    overrides[name] = value;
  }
  return overrides;
}

'use strict';
// Docker HEALTHCHECK: exit 0 when every target is healthy.
//   node healthcheck.cjs /ready        this container's app answers 200 within 2 s
//                                      (HTTP_PORT, else the app's default port)
//   node healthcheck.cjs http://…      that URL answers 200 within 2 s
//   node healthcheck.cjs file:/path    that file exists and is not empty
// Readiness (not liveness) is what compose's `service_healthy` waits for:
// /ready answers 200 only once Redis, and for the workers their Kubernetes
// watch or initial reconcile, actually work.
const { statSync } = require('node:fs');

/** Each app's HTTP_PORT default (apps/<app>/src/<app>.config.ts); a test keeps them equal. */
const DEFAULT_PORTS = {
  'allocation-api': 8080,
  webhooks: 8081,
  admin: 8082,
  'pod-watcher': 8083,
  reconciler: 8084,
};

async function healthy(target) {
  if (target.startsWith('file:')) {
    try {
      return statSync(target.slice('file:'.length)).size > 0;
    } catch {
      return false;
    }
  }
  const port = process.env.HTTP_PORT || DEFAULT_PORTS[process.env.APP || ''] || 8080;
  const url = /^https?:\/\//.test(target) ? target : `http://127.0.0.1:${port}${target}`;
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2000) })).status === 200;
  } catch {
    return false;
  }
}

async function main() {
  const targets = process.argv.length > 2 ? process.argv.slice(2) : ['/ready'];
  for (const target of targets) {
    if (!(await healthy(target))) process.exit(1);
  }
  process.exit(0);
}

if (require.main === module) void main();

module.exports = { DEFAULT_PORTS };

import { randomBytes } from 'node:crypto';

/**
 * Re-homing (SPEC 11) is on under `npm start` (issue 20): answer documents ask
 * for the stream-ended URL, a stream-stopped callback still releases the call
 * (SPEC 9.2) and leaves a re-home ticket, and the reconciler redirects a dead
 * agent's calls through the simulated carrier's REST surface. Webhooks stay
 * open (no *_AUTH_TOKENS: the carrier and tests post unsigned), so the REST
 * credentials are their own variables: an account id and token made for this
 * run, which the simulated carrier (same environment) demands in Basic auth.
 * Values from the shell win (REHOME_ENABLED=false turns it off).
 */
export const startRehomeEnv = (): Record<string, string> => ({
  REHOME_ENABLED: 'true',
  TWILIO_ACCOUNT_SID: `AC${randomBytes(16).toString('hex')}`,
  TWILIO_API_AUTH_TOKEN: randomBytes(16).toString('hex'),
  PLIVO_AUTH_ID: `MA${randomBytes(9).toString('hex').toUpperCase()}`,
  PLIVO_API_AUTH_TOKEN: randomBytes(20).toString('base64url'),
});

import twilio from 'twilio';
import type { CallToRehome } from '@smart-router/redis-scripts';
import { RehomeSettings } from './reconciler.config';

/**
 * Moves a live call of a dead agent whose media socket may still be open
 * (SPEC 11 "Recovery"): the provider is told, through its REST API, to leave
 * the stream and request the call's stream-ended URL, where the webhooks app
 * re-homes it. Only providers with REST credentials are listed in
 * `providers`; the liveness script ends the calls of every other provider
 * (Exotel documents no mid-call redirect) with reason agent_dead.
 */
export interface CallRedirector {
  readonly providers: readonly string[];
  redirect(call: CallToRehome): Promise<void>;
}

type PlivoRequest = (method: string, action: string, params?: Record<string, unknown>) => Promise<unknown>;
interface PlivoCalls {
  transfer(uuid: string, params: Record<string, string>): Promise<unknown>;
}

/**
 * How long one provider REST redirect may take (connect to answer). The reconciler's one BullMQ
 * worker runs its jobs one at a time, so a hung provider must not hold liveness, the connect
 * timeout, the guardrail and the fleet step for the SDKs' defaults (Twilio 30 s; Plivo's client
 * built without isVoiceRequest: none): past this the redirect fails, and the call ends as any
 * failed redirect does (agent_dead).
 */
export const REDIRECT_TIMEOUT_MS = 5000;

/**
 * The official SDKs. Twilio: `calls(sid).update({url, method})` with the Api
 * domain's base URL set to TWILIO_API_BASE_URL. Plivo: transfer of the A leg;
 * plivo 4.79 sends voice requests to a hard-coded api.plivo.com whatever its
 * `url` option says (the `isVoiceRequest` flag), so the SDK's own request
 * client and call resource are built on PLIVO_API_BASE_URL without that flag
 * (as tools/stack/src/carrier.e2e.spec.ts documents).
 */
export class SdkCallRedirector implements CallRedirector {
  readonly providers: readonly string[];
  private readonly twilioClient: ReturnType<typeof twilio> | null;
  private readonly plivoCalls: PlivoCalls | null;

  constructor(private readonly settings: RehomeSettings, timeoutMs = REDIRECT_TIMEOUT_MS) {
    const { twilio: twilioAccount, plivo: plivoAccount } = settings;
    // twilio's `timeout`: its RequestClient's request timeout (and HTTPS agent socket timeout).
    this.twilioClient = twilioAccount ? twilio(twilioAccount.accountSid, twilioAccount.authToken, { timeout: timeoutMs }) : null;
    if (this.twilioClient && twilioAccount) this.twilioClient.api.baseUrl = twilioAccount.apiBaseUrl;
    this.plivoCalls = plivoAccount ? plivoCallResource(plivoAccount.authId, plivoAccount.authToken, plivoAccount.apiBaseUrl, timeoutMs) : null;
    this.providers = [...(this.twilioClient ? ['twilio'] : []), ...(this.plivoCalls ? ['plivo'] : [])];
  }

  private streamEndedUrl(provider: string, allocationId: string): string {
    return `${this.settings.publicBaseUrl}/api/v1/${provider}/stream-ended?allocation_id=${encodeURIComponent(allocationId)}`;
  }

  async redirect(call: CallToRehome): Promise<void> {
    const url = this.streamEndedUrl(call.provider, call.allocationId);
    if (call.provider === 'twilio' && this.twilioClient) {
      await this.twilioClient.calls(call.callSid).update({ url, method: 'POST' });
    } else if (call.provider === 'plivo' && this.plivoCalls) {
      await this.plivoCalls.transfer(call.callSid, { legs: 'aleg', alegUrl: url, alegMethod: 'POST' });
    } else {
      throw new Error(`no REST redirect for provider "${call.provider}"`);
    }
  }
}

function plivoCallResource(authId: string, authToken: string, apiBaseUrl: string, timeoutMs: number): PlivoCalls {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { Axios } = require('plivo/dist/rest/axios') as { Axios: (config: Record<string, string | number>) => PlivoRequest };
  const { camelCaseRequestWrapper } = require('plivo/dist/rest/utils') as { camelCaseRequestWrapper: (request: PlivoRequest) => PlivoRequest };
  const { CallInterface } = require('plivo/dist/resources/call') as { CallInterface: new (request: PlivoRequest) => PlivoCalls };
  /* eslint-enable @typescript-eslint/no-require-imports */
  // plivo's `timeout` (axios' request timeout): without isVoiceRequest the client sets none of its own.
  const request = camelCaseRequestWrapper(Axios({ authId, authToken, version: 'v1', url: `${apiBaseUrl}/v1/Account/${authId}`, userAgent: 'smart-router', timeout: timeoutMs }));
  return new CallInterface((method, action, params) => {
    const { isVoiceRequest: _voice, ...rest } = (params ?? {}) as Record<string, unknown>;
    return request(method, action, rest);
  });
}

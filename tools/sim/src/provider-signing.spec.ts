import { isValidPlivoV3Signature, isValidTwilioSignature, parseParams } from '@smart-router/providers';
import { parseProviderXml } from './carrier';
import { plivoRequestHeaders, twilioRequestHeaders } from './provider-signing';

/**
 * The carrier's signing side against the providers' published vectors
 * (research/reliability-anchors.md §1.1, §1.2), and against the verification
 * the webhooks app runs: what the carrier signs, the router accepts.
 */
describe('the simulated carrier signs as the providers do', () => {
  const twilioParams = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675309', Digits: '1234', From: '+14158675309', To: '+18005551212' };

  it('Twilio: twilio-node validation.spec vectors (token 12345)', () => {
    expect(twilioRequestHeaders('12345', 'https://mycompany.com/myapp.php?foo=1&bar=2', twilioParams)['X-Twilio-Signature']).toBe('RSOYDt4T1cUTdK1PDd93/VVr8B8=');
    expect(twilioRequestHeaders('12345', 'http://mycompany.com:1234/myapp.php?foo=1&bar=2', twilioParams)['X-Twilio-Signature']).toBe('Zmvh+3yNM1Phv2jhDCwEM3q5ebU=');
    expect(twilioRequestHeaders('12345', 'https://mycompany.com:443/myapp.php?foo=1&bar=2', twilioParams)['X-Twilio-Signature']).toBe('kvajT1Ptam85bY51eRf/AJRuM3w=');
  });

  it('Twilio: a fresh idempotency token per request; unsigned without a token', () => {
    const first = twilioRequestHeaders(undefined, 'http://x/a', {});
    const second = twilioRequestHeaders(undefined, 'http://x/a', {});
    expect(first['X-Twilio-Signature']).toBeUndefined();
    expect(first['I-Twilio-Idempotency-Token']).not.toBe(second['I-Twilio-Idempotency-Token']);
  });

  it('Plivo: the V3 GET vector (plivo-ruby signature spec)', () => {
    const headers = plivoRequestHeaders('my_auth_token', 'GET', 'https://answer.url/', { CallUUID: '97ceeb52-58b6-11e1-86da-77300b68f8bb', Duration: '300' }, '12345');
    expect(headers).toEqual({ 'X-Plivo-Signature-V3': 'pETJPPuss8j7tRO1V76pMhutvY1EbD905bph1xlJQhE=', 'X-Plivo-Signature-V3-Nonce': '12345' });
    expect(plivoRequestHeaders(undefined, 'POST', 'https://answer.url', {})).toEqual({});
  });

  it('what the carrier signs, the webhooks verification accepts; a changed field or URL does not pass', () => {
    const url = 'http://127.0.0.1:8000/api/v1/twilio/answer?merchant_id=m1';
    const fields = { CallSid: 'CAabc', From: '+1555', To: '+1666', CallStatus: 'ringing' };
    const twilio = twilioRequestHeaders('tok', url, fields)['X-Twilio-Signature'];
    const form = (value: Record<string, string>) => parseParams(new URLSearchParams(value).toString());
    expect(isValidTwilioSignature(['tok'], twilio, url, form(fields))).toBe(true);
    expect(isValidTwilioSignature(['tok'], twilio, url, form({ ...fields, CallSid: 'CAother' }))).toBe(false);
    expect(isValidTwilioSignature(['tok'], twilio, url.replace('m1', 'm2'), form(fields))).toBe(false);

    const plivoUrl = 'http://127.0.0.1:8000/api/v1/plivo/answer?merchant_id=m1';
    const plivoFields = { CallUUID: 'u-1', From: '+1555', To: '+1666' };
    const plivo = plivoRequestHeaders('ptok', 'POST', plivoUrl, plivoFields);
    const nonce = plivo['X-Plivo-Signature-V3-Nonce'];
    expect(nonce).toMatch(/^\d{20}$/);
    expect(isValidPlivoV3Signature(['ptok'], plivo['X-Plivo-Signature-V3'], 'POST', plivoUrl, nonce, form(plivoFields))).toBe(true);
    expect(isValidPlivoV3Signature(['ptok'], plivo['X-Plivo-Signature-V3'], 'POST', plivoUrl, `${nonce}1`, form(plivoFields))).toBe(false);
    expect(isValidPlivoV3Signature(['ptok'], plivo['X-Plivo-Signature-V3'], 'POST', plivoUrl, nonce, form({ ...plivoFields, CallUUID: 'u-2' }))).toBe(false);
  });

  it('parses the documents the router answers (TwiML Connect action, Plivo Stream + Redirect), entities decoded', () => {
    const twiml = parseProviderXml('<?xml version="1.0"?><Response><Connect action="http://h/a?x=1&amp;y=2"><Stream url="ws://h/ws" statusCallback="http://h/s"><Parameter name="rehome_from" value="voice-agent-3"/></Stream></Connect></Response>');
    expect(twiml.children[0].attributes.action).toBe('http://h/a?x=1&y=2');
    expect(twiml.children[0].children[0].children[0].attributes).toEqual({ name: 'rehome_from', value: 'voice-agent-3' });
    const plivo = parseProviderXml('<Response><Stream keepCallAlive="true" statusCallbackUrl="http://h/s">ws://h/ws</Stream><Redirect>http://h/r</Redirect></Response>');
    expect(plivo.children.map((element) => [element.name, element.text])).toEqual([['Stream', 'ws://h/ws'], ['Redirect', 'http://h/r']]);
    expect(() => parseProviderXml('<Response><Stream></Response>')).toThrow();
    expect(() => parseProviderXml('<html></html>')).toThrow();
  });
});

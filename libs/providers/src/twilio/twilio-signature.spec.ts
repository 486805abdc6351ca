import { ApiError } from '@smart-router/http';
import { createWebhookRequest, paramMap } from '../webhook-request';
import { TwilioSignature, isValidTwilioSignature, twilioSignature, twilioUrlVariants } from './twilio-signature';

// Official vectors: twilio-node spec/validation.spec.js (re-derived in
// shared/research/reliability-anchors.md section 1.1).
const TOKEN = '12345';
const URL = 'https://mycompany.com/myapp.php?foo=1&bar=2';
const PARAMS = paramMap({ CallSid: 'CA1234567890ABCDE', Caller: '+14158675309', Digits: '1234', From: '+14158675309', To: '+18005551212' });
const BODY = '{"property": "value", "boolean": true}';
const BODY_HASH = '0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620';
const EMPTY_BODY_HASH = '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

describe('Twilio signature: official vectors', () => {
  it.each([
    ['default', URL, PARAMS, 'RSOYDt4T1cUTdK1PDd93/VVr8B8='],
    ['https with explicit :443', 'https://mycompany.com:443/myapp.php?foo=1&bar=2', PARAMS, 'kvajT1Ptam85bY51eRf/AJRuM3w='],
    ['http with :80', 'http://mycompany.com:80/myapp.php?foo=1&bar=2', PARAMS, '0ZXoZLH/DfblKGATFgpif+LLRf4='],
    ['http with :1234', 'http://mycompany.com:1234/myapp.php?foo=1&bar=2', PARAMS, 'Zmvh+3yNM1Phv2jhDCwEM3q5ebU='],
    ['credentials in the URL', 'https://user:pass@mycompany.com/myapp.php?foo=1&bar=2', PARAMS, 'CukzLTc1tT5dXEDIHm/tKBanW10='],
    ['credentials and :443', 'https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2', PARAMS, 'ZQFR1PTIZXF2MXB8ZnKCvnnA+rI='],
    ['JSON body (URL only)', `${URL}&bodySHA256=${BODY_HASH}`, paramMap({}), 'a9nBmqA0ju/hNViExpshrM61xv4='],
    ['only the bodySHA256 param', `https://mycompany.com/myapp.php?bodySHA256=${BODY_HASH}`, paramMap({}), 'y77kIzt2vzLz71DgmJGsen2scGs='],
    ['array param, either order', URL, paramMap({ 'MessagingBinding.Address': ['+1415xxxxxxx', '+1325xxxxxxx'] }), '83O6e2vORAoJHUNzJjDWN1jz+BA='],
    ['repeated values', URL, paramMap({ Sid: 'CA123', SidAccount: 'AC123', Digits: ['5678', '1234', '1234'] }), 'IK+Dwps556ElfBT0I3Rgjkr1wJU='],
    ['raw apostrophe', `${URL}&Body=It's+amazing`, PARAMS, 'dsq4Ehbj6cs+KdTkpF5sSSplOWw='],
    ['Twilio docs example', URL, paramMap({ ...Object.fromEntries([...PARAMS].map(([k, v]) => [k, v])), Caller: '+12349013030', From: '+12349013030' }), '0/KCTR6DLpKmkAf8muzZqo1nDgQ='],
  ])('%s', (_case, url, params, expected) => {
    expect(twilioSignature(TOKEN, url, params)).toBe(expected);
    expect(isValidTwilioSignature([TOKEN], expected, url, params, Buffer.from(BODY))).toBe(true);
  });

  it('accepts the URL with or without its default port, as twilio-node does', () => {
    expect(isValidTwilioSignature([TOKEN], 'kvajT1Ptam85bY51eRf/AJRuM3w=', URL, PARAMS)).toBe(true);
    expect(isValidTwilioSignature([TOKEN], 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', 'https://mycompany.com:443/myapp.php?foo=1&bar=2', PARAMS)).toBe(true);
    expect(isValidTwilioSignature([TOKEN], '0ZXoZLH/DfblKGATFgpif+LLRf4=', 'http://mycompany.com/myapp.php?foo=1&bar=2', PARAMS)).toBe(true);
    expect(isValidTwilioSignature([TOKEN], 'ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=', 'https://user:pass@mycompany.com/myapp.php?foo=1&bar=2', PARAMS)).toBe(true);
    expect(twilioUrlVariants('https://mycompany.com/a?b=1')).toEqual(expect.arrayContaining(['https://mycompany.com/a?b=1', 'https://mycompany.com:443/a?b=1']));
  });

  it('validates the raw apostrophe and its WHATWG-encoded spelling', () => {
    const raw = `${URL}&Body=It's+amazing`;
    const encoded = `${URL}&Body=It%27s+amazing`;
    expect(isValidTwilioSignature([TOKEN], twilioSignature(TOKEN, encoded, PARAMS), raw, PARAMS)).toBe(true);
    expect(isValidTwilioSignature([TOKEN], 'dsq4Ehbj6cs+KdTkpF5sSSplOWw=', raw, PARAMS)).toBe(true);
  });

  it('JSON body variant: the empty body {} validates only through the :443 spelling, and the body hash must match', () => {
    const url = `${URL}&bodySHA256=${EMPTY_BODY_HASH}`;
    expect(isValidTwilioSignature([TOKEN], 'Ldidvp12m26NI7eqEvxnEpkd9Hc=', url, paramMap({}), Buffer.from('{}'))).toBe(true);
    expect(twilioSignature(TOKEN, url, paramMap({}))).not.toBe('Ldidvp12m26NI7eqEvxnEpkd9Hc=');
    const signed = `${URL}&bodySHA256=${BODY_HASH}`;
    expect(isValidTwilioSignature([TOKEN], 'a9nBmqA0ju/hNViExpshrM61xv4=', signed, paramMap({}), Buffer.from('{"property": "forged"}'))).toBe(false);
  });

  it('rejects a wrong signature, an unexpected query parameter and a wrong token', () => {
    expect(isValidTwilioSignature([TOKEN], 'WRONG_SIGNATURE', URL, PARAMS)).toBe(false);
    expect(isValidTwilioSignature([TOKEN], 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', `${URL}&somethingUnexpected=true`, PARAMS)).toBe(false);
    expect(isValidTwilioSignature(['other-token'], 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', URL, PARAMS)).toBe(false);
    expect(isValidTwilioSignature([TOKEN], 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', URL, paramMap({ CallSid: 'CA-forged' }))).toBe(false);
  });
});

describe('TwilioSignature', () => {
  const body = [...PARAMS].map(([name, [value]]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&');
  const request = (headers: Record<string, string>) =>
    createWebhookRequest({ method: 'POST', url: URL, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, rawBody: body });
  const codeOf = (work: () => void) => {
    try {
      work();
      return 'ok';
    } catch (error) {
      return `${(error as ApiError).status} ${(error as ApiError).code}`;
    }
  };

  it('checks nothing when no token is configured', () => {
    expect(new TwilioSignature([]).enabled).toBe(false);
    expect(codeOf(() => new TwilioSignature([]).verify(request({})))).toBe('ok');
  });

  it('accepts any configured token (rotation), 403 for missing or wrong signatures', () => {
    const signature = new TwilioSignature(['old-token', TOKEN]);
    expect(codeOf(() => signature.verify(request({ 'x-twilio-signature': 'RSOYDt4T1cUTdK1PDd93/VVr8B8=' })))).toBe('ok');
    expect(codeOf(() => signature.verify(request({})))).toBe('403 SIGNATURE_MISSING');
    expect(codeOf(() => signature.verify(request({ 'X-Twilio-Signature': 'WRONG_SIGNATURE' })))).toBe('403 SIGNATURE_INVALID');
    expect(codeOf(() => new TwilioSignature(['old-token']).verify(request({ 'x-twilio-signature': 'RSOYDt4T1cUTdK1PDd93/VVr8B8=' })))).toBe('403 SIGNATURE_INVALID');
  });
});

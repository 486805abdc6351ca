import { ApiError } from '@smart-router/http';
import { ExotelAdapter } from './exotel/exotel.adapter';
import { ExotelCredentials } from './exotel/exotel-credentials';
import { PlivoAdapter } from './plivo/plivo.adapter';
import { PlivoSignature } from './plivo/plivo-signature';
import { TwilioAdapter } from './twilio/twilio.adapter';
import { TwilioSignature } from './twilio/twilio-signature';
import { createWebhookRequest } from './webhook-request';
import { escapeXml } from './xml';

const twilio = new TwilioAdapter(new TwilioSignature([]));
const plivo = new PlivoAdapter(new PlivoSignature([]));
const exotel = new ExotelAdapter(new ExotelCredentials([]));

const form = (body: string, query = '') =>
  createWebhookRequest({ method: 'POST', url: `https://h.test/hook${query}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' }, rawBody: body });
const json = (body: string, query = '') =>
  createWebhookRequest({ method: 'POST', url: `https://h.test/hook${query}`, headers: { 'content-type': 'application/json' }, rawBody: body });
const errorOf = (work: () => unknown) => {
  try {
    work();
    return 'ok';
  } catch (error) {
    return `${(error as ApiError).status} ${(error as ApiError).code}`;
  }
};
const unavailable = ApiError.unavailable('no pod available', 'NO_POD_AVAILABLE');

describe('XML escaping', () => {
  it('escapes the five XML specials and drops characters XML cannot carry', () => {
    expect(escapeXml(`a&b<c>d"e'f`)).toBe('a&amp;b&lt;c&gt;d&quot;e&apos;f');
    expect(escapeXml('bell\u0007 tab\t nl\n ok é 😀')).toBe('bell tab\t nl\n ok é 😀');
    expect(escapeXml('lone \uD800 surrogate')).toBe('lone  surrogate');
  });

  it('escapes the ws_url in both XML documents', () => {
    const url = 'wss://h.test/a&b/"x"<y>/ws/pod/voice-agent-1/CA1';
    expect(twilio.answerDocument(url).body).toBe('<Response><Connect><Stream url="wss://h.test/a&amp;b/&quot;x&quot;&lt;y&gt;/ws/pod/voice-agent-1/CA1"></Stream></Connect></Response>');
    expect(plivo.answerDocument(url).body).toContain('>wss://h.test/a&amp;b/&quot;x&quot;&lt;y&gt;/ws/pod/voice-agent-1/CA1</Stream>');
    expect(new TwilioAdapter(new TwilioSignature([]), 'Sorry <b> & "bye"').failureDocument(unavailable).body)
      .toBe('<Response><Say>Sorry &lt;b&gt; &amp; &quot;bye&quot;</Say><Hangup/></Response>');
  });
});

describe('provider documents', () => {
  const ws = 'wss://buddy.example.test/ws/pod/voice-agent-1/CA1';
  it('Twilio: Connect/Stream TwiML, Say+Hangup on failure, both 200 text/xml', () => {
    expect(twilio.answerDocument(ws)).toEqual({ status: 200, contentType: 'text/xml; charset=utf-8', body: `<Response><Connect><Stream url="${ws}"></Stream></Connect></Response>` });
    const failure = twilio.failureDocument(unavailable);
    expect(failure.status).toBe(200);
    expect(failure.body).toMatch(/^<Response><Say>[^<]+<\/Say><Hangup\/><\/Response>$/);
  });

  it('Plivo: bidirectional mulaw Stream with the URL as text, Speak+Hangup on failure', () => {
    expect(plivo.answerDocument(ws).body).toBe(`<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">${ws}</Stream></Response>`);
    const failure = plivo.failureDocument(unavailable);
    expect(failure.status).toBe(200);
    expect(failure.body).toMatch(/^<Response><Speak>[^<]+<\/Speak><Hangup\/><\/Response>$/);
  });

  it('Exotel: {"url"} JSON, and the error itself (non-2xx) on failure', () => {
    expect(exotel.answerDocument(ws)).toEqual({ status: 200, contentType: 'application/json; charset=utf-8', body: JSON.stringify({ url: ws }) });
    expect(exotel.failureDocument(unavailable)).toEqual({ status: 503, contentType: 'application/json; charset=utf-8', body: '{"error":"no pod available","code":"NO_POD_AVAILABLE"}' });
    expect(exotel.failureDocument(new ApiError(409, 'CALL_ENDED', 'call already ended')).status).toBe(409);
  });
});

describe('answer fields', () => {
  it('Twilio: CallSid from the form, merchant_id from the query', () => {
    expect(twilio.parseAnswer(form('CallSid=CA1&AccountSid=AC1&From=%2B1234', '?merchant_id=m.1'))).toEqual({ callSid: 'CA1', merchantId: 'm.1', caller: '+1234' });
    expect(twilio.parseAnswer(form('CallSid=CA1&merchant_id=ignored'))).toEqual({ callSid: 'CA1', merchantId: '', caller: '' });
    expect(twilio.parseAnswer(form('CallSid=CA1', '?merchant_id='))).toEqual({ callSid: 'CA1', merchantId: '', caller: '' });
    // The caller is only hashed for a sticky rollout (SPEC 12): bounded, never validated as a number.
    expect(twilio.parseAnswer(form(`CallSid=CA1&From=${'9'.repeat(300)}`)).caller).toHaveLength(256);
  });

  it('Plivo: CallUUID from the form', () => {
    expect(plivo.parseAnswer(form('CallUUID=97ceeb52-58b6-11e1-86da-77300b68f8bb', '?merchant_id=acme'))).toEqual({ callSid: '97ceeb52-58b6-11e1-86da-77300b68f8bb', merchantId: 'acme', caller: '' });
    expect(plivo.parseAnswer(form('CallUUID=97ceeb52-58b6-11e1-86da-77300b68f8bb&From=14155550100')).caller).toBe('14155550100');
  });

  it('Exotel: JSON or form body, falling back to the query', () => {
    expect(exotel.parseAnswer(json('{"CallSid":"80bfbec2d78bbbf10fb851f4fa165211","merchant_id":"acme"}'))).toEqual({ callSid: '80bfbec2d78bbbf10fb851f4fa165211', merchantId: 'acme', caller: '' });
    expect(exotel.parseAnswer(json('{"CallSid":"e1"}', '?merchant_id=q1'))).toEqual({ callSid: 'e1', merchantId: 'q1', caller: '' });
    expect(exotel.parseAnswer(json('{"CallSid":"e1","merchant_id":"b1"}', '?merchant_id=q1'))).toEqual({ callSid: 'e1', merchantId: 'b1', caller: '' });
    expect(exotel.parseAnswer(form('CallSid=e2', '?merchant_id=q2'))).toEqual({ callSid: 'e2', merchantId: 'q2', caller: '' });
    expect(exotel.parseAnswer(json('{"CallSid":"e3","From":"09876543210"}')).caller).toBe('09876543210');
    expect(exotel.parseAnswer(form('CallSid=e4&from=0111')).caller).toBe('0111');
    expect(exotel.parseAnswer(json('{"CallSid":"e5","From":42}')).caller).toBe('');
  });

  it.each([
    ['twilio missing CallSid', () => twilio.parseAnswer(form('AccountSid=AC1')), '400 CALL_SID_REQUIRED'],
    ['twilio empty CallSid', () => twilio.parseAnswer(form('CallSid=')), '400 CALL_SID_REQUIRED'],
    ['twilio CallSid with a space', () => twilio.parseAnswer(form('CallSid=CA+1')), '400 INVALID_CALL_SID'],
    ['twilio CallSid too long', () => twilio.parseAnswer(form(`CallSid=${'x'.repeat(129)}`)), '400 INVALID_CALL_SID'],
    ['twilio bad merchant_id', () => twilio.parseAnswer(form('CallSid=CA1', '?merchant_id=bad/merchant')), '400 INVALID_MERCHANT_ID'],
    ['twilio merchant_id too long', () => twilio.parseAnswer(form('CallSid=CA1', `?merchant_id=${'m'.repeat(129)}`)), '400 INVALID_MERCHANT_ID'],
    ['twilio JSON body', () => twilio.parseAnswer(json('{"CallSid":"CA1"}')), '400 CALL_SID_REQUIRED'],
    ['plivo CallSid instead of CallUUID', () => plivo.parseAnswer(form('CallSid=CA1')), '400 CALL_SID_REQUIRED'],
    ['exotel CallSid a number', () => exotel.parseAnswer(json('{"CallSid":123}')), '400 INVALID_CALL_SID'],
    ['exotel merchant_id an object', () => exotel.parseAnswer(json('{"CallSid":"e1","merchant_id":{}}')), '400 INVALID_MERCHANT_ID'],
    ['exotel JSON array', () => exotel.parseAnswer(json('["CallSid"]')), '400 CALL_SID_REQUIRED'],
    ['exotel malformed JSON', () => exotel.parseAnswer(json('{"CallSid":')), '400 INVALID_BODY'],
  ])('%s', (_case, work, expected) => {
    expect(errorOf(work)).toBe(expected);
  });
});

describe('status callbacks', () => {
  it.each(['completed', 'busy', 'failed', 'no-answer', 'canceled'])('Twilio %s is final', (status) => {
    expect(twilio.parseStatus(form(`CallSid=CA1&CallStatus=${status}`))).toEqual({ callSid: 'CA1', status, final: true });
  });

  it.each(['queued', 'initiated', 'ringing', 'in-progress', '', 'Completed!'])('Twilio "%s" is not final', (status) => {
    expect(twilio.parseStatus(form(`CallSid=CA1&CallStatus=${encodeURIComponent(status)}`)).final).toBe(false);
  });

  it('Plivo status: final statuses; the hangup URL is always final', () => {
    for (const status of ['completed', 'hangup', 'busy', 'failed', 'timeout', 'no-answer', 'cancel']) {
      expect(plivo.parseStatus(form(`CallUUID=u1&CallStatus=${status}`))).toEqual({ callSid: 'u1', status, final: true });
    }
    expect(plivo.parseStatus(form('CallUUID=u1&CallStatus=in-progress')).final).toBe(false);
    expect(plivo.parseHangup(form('CallUUID=u1&HangupCause=NORMAL_CLEARING'))).toEqual({ callSid: 'u1', status: 'hangup', final: true });
    expect(plivo.parseHangup(form('CallUUID=u1&CallStatus=completed'))).toEqual({ callSid: 'u1', status: 'completed', final: true });
  });

  it('Exotel Status: completed, failed, busy, no-answer are final (JSON or form)', () => {
    for (const status of ['completed', 'failed', 'busy', 'no-answer']) {
      expect(exotel.parseStatus(form(`CallSid=e1&Status=${status}`))).toEqual({ callSid: 'e1', status, final: true });
    }
    expect(exotel.parseStatus(json('{"CallSid":"e1","Status":"in-progress"}')).final).toBe(false);
  });

  it('a status callback without a call id is a 400', () => {
    expect(errorOf(() => twilio.parseStatus(form('CallStatus=completed')))).toBe('400 CALL_SID_REQUIRED');
    expect(errorOf(() => plivo.parseHangup(form('')))).toBe('400 CALL_SID_REQUIRED');
  });
});

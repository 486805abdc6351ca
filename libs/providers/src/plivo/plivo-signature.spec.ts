import { ApiError } from '@smart-router/http';
import { createWebhookRequest, paramMap } from '../webhook-request';
import { PlivoSignature, isValidPlivoV3Signature, plivoV3Signature, plivoV3SignedUrl } from './plivo-signature';

// Official vectors: shared/research/reliability-anchors.md section 1.2. The
// SDKs' own POST vectors disagree with each other and with their code, so
// POST is pinned by the construction plivo-node and plivo-go share (and by
// its output), and GET by the plivo-ruby vector that matches that construction.
const TOKEN = 'my_auth_token';
const CALL = paramMap({ CallUUID: '97ceeb52-58b6-11e1-86da-77300b68f8bb', Duration: '300' });

describe('Plivo V3 signature', () => {
  it('GET: official vector (plivo-ruby signature spec)', () => {
    expect(plivoV3SignedUrl('GET', 'https://answer.url/', CALL)).toBe('https://answer.url/?CallUUID=97ceeb52-58b6-11e1-86da-77300b68f8bb&Duration=300');
    expect(plivoV3Signature(TOKEN, 'GET', 'https://answer.url/', '12345', CALL)).toBe('pETJPPuss8j7tRO1V76pMhutvY1EbD905bph1xlJQhE=');
    expect(isValidPlivoV3Signature([TOKEN], 'pETJPPuss8j7tRO1V76pMhutvY1EbD905bph1xlJQhE=', 'GET', 'https://answer.url/', '12345', CALL)).toBe(true);
  });

  it('GET merges the query into the params, values sorted within a name', () => {
    expect(plivoV3SignedUrl('GET', 'https://h.test/a?z=1&Duration=200#frag', CALL))
      .toBe('https://h.test/a?CallUUID=97ceeb52-58b6-11e1-86da-77300b68f8bb&Duration=200&Duration=300&z=1');
    expect(plivoV3SignedUrl('GET', 'https://h.test/a', paramMap({}))).toBe('https://h.test/a');
  });

  it('POST: `?` + sorted query, `.`, then sorted params as name+value (plivo-node v3Security, plivo-go GenerateUrl)', () => {
    expect(plivoV3SignedUrl('POST', 'https://answer.url', CALL)).toBe('https://answer.url?CallUUID97ceeb52-58b6-11e1-86da-77300b68f8bbDuration300');
    expect(plivoV3SignedUrl('POST', 'https://h.test:8443/answer?merchant_id=m1&a=b', CALL))
      .toBe('https://h.test:8443/answer?a=b&merchant_id=m1.CallUUID97ceeb52-58b6-11e1-86da-77300b68f8bbDuration300');
    expect(plivoV3SignedUrl('POST', 'https://h.test/answer?merchant_id=m1', paramMap({}))).toBe('https://h.test/answer?merchant_id=m1');
    expect(plivoV3SignedUrl('POST', 'https://h.test/answer', paramMap({}))).toBe('https://h.test/answer');
    // HMAC-SHA256 over that string + "." + nonce, base64 (pinned output of the construction above).
    expect(plivoV3Signature(TOKEN, 'POST', 'https://answer.url', '12345', CALL)).toBe('lGsA7wORSRimdxCEqlJfbyxIYTxOsbYjbXU05rrpSpE=');
  });

  it('accepts any of several comma-separated signatures and any configured token; rejects the rest', () => {
    const good = plivoV3Signature(TOKEN, 'POST', 'https://answer.url', '12345', CALL);
    expect(isValidPlivoV3Signature([TOKEN], `bogus, ${good}`, 'POST', 'https://answer.url', '12345', CALL)).toBe(true);
    expect(isValidPlivoV3Signature(['old', TOKEN], good, 'POST', 'https://answer.url', '12345', CALL)).toBe(true);
    expect(isValidPlivoV3Signature(['old'], good, 'POST', 'https://answer.url', '12345', CALL)).toBe(false);
    expect(isValidPlivoV3Signature([TOKEN], good, 'POST', 'https://answer.url', '54321', CALL)).toBe(false);
    expect(isValidPlivoV3Signature([TOKEN], good, 'POST', 'https://answer.url', '12345', paramMap({ CallUUID: 'forged', Duration: '300' }))).toBe(false);
    expect(isValidPlivoV3Signature([TOKEN], good, 'POST', 'https://answer.url?merchant_id=gold', '12345', CALL)).toBe(false);
  });
});

describe('PlivoSignature', () => {
  const url = 'https://router.example.test/api/v1/plivo/answer?merchant_id=m1';
  const body = 'CallUUID=97ceeb52-58b6-11e1-86da-77300b68f8bb&Duration=300';
  const request = (headers: Record<string, string>) =>
    createWebhookRequest({ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, rawBody: body });
  const codeOf = (work: () => void) => {
    try {
      work();
      return 'ok';
    } catch (error) {
      return `${(error as ApiError).status} ${(error as ApiError).code}`;
    }
  };
  const sign = (token: string, nonce: string) => plivoV3Signature(token, 'POST', url, nonce, CALL);

  it('checks nothing when no token is configured', () => {
    expect(codeOf(() => new PlivoSignature([]).verify(request({})))).toBe('ok');
  });

  it('good, rotated, main-account header, missing signature or nonce, wrong', () => {
    const verifier = new PlivoSignature(['old', TOKEN]);
    expect(codeOf(() => verifier.verify(request({ 'x-plivo-signature-v3': sign(TOKEN, 'n1'), 'x-plivo-signature-v3-nonce': 'n1' })))).toBe('ok');
    expect(codeOf(() => verifier.verify(request({ 'x-plivo-signature-v3': `${sign('other', 'n1')},${sign('old', 'n1')}`, 'x-plivo-signature-v3-nonce': 'n1' })))).toBe('ok');
    expect(codeOf(() => verifier.verify(request({ 'x-plivo-signature-ma-v3': sign(TOKEN, 'n1'), 'x-plivo-signature-v3-nonce': 'n1' })))).toBe('ok');
    expect(codeOf(() => verifier.verify(request({ 'x-plivo-signature-v3-nonce': 'n1' })))).toBe('403 SIGNATURE_MISSING');
    expect(codeOf(() => verifier.verify(request({ 'x-plivo-signature-v3': sign(TOKEN, 'n1') })))).toBe('403 SIGNATURE_MISSING');
    expect(codeOf(() => verifier.verify(request({ 'x-plivo-signature-v3': sign(TOKEN, 'n1'), 'x-plivo-signature-v3-nonce': 'n2' })))).toBe('403 SIGNATURE_INVALID');
    expect(codeOf(() => verifier.verify(request({ 'x-plivo-signature-v3': sign('other', 'n1'), 'x-plivo-signature-v3-nonce': 'n1' })))).toBe('403 SIGNATURE_INVALID');
  });
});

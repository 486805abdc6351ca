import { ApiError } from '@smart-router/http';
import { createWebhookRequest } from '../webhook-request';
import { ExotelCredentials, parseBasicCredentials } from './exotel-credentials';

const basic = (userPass: string) => `Basic ${Buffer.from(userPass).toString('base64')}`;
const request = (authorization?: string) =>
  createWebhookRequest({ method: 'POST', url: 'https://h.test/api/v1/exotel/answer', headers: authorization ? { authorization } : {}, rawBody: '' });
const codeOf = (work: () => void) => {
  try {
    work();
    return 'ok';
  } catch (error) {
    return `${(error as ApiError).status} ${(error as ApiError).code}`;
  }
};

describe('Exotel basic credentials', () => {
  it('parses user:password pairs, a password may contain a colon', () => {
    expect(parseBasicCredentials(['api-key:tok:en', 'u2:p2'])).toEqual([{ user: 'api-key', password: 'tok:en' }, { user: 'u2', password: 'p2' }]);
    expect(() => parseBasicCredentials(['ok:1', 'no-colon'])).toThrow('entry 2 must be user:password');
    expect(() => parseBasicCredentials([':password'])).toThrow('entry 1');
    expect(() => parseBasicCredentials(['user:'])).toThrow('entry 1');
  });

  it('checks nothing when none are configured', () => {
    expect(codeOf(() => new ExotelCredentials([]).verify(request()))).toBe('ok');
  });

  it('accepts any configured pair; 401 when missing, malformed or wrong', () => {
    const credentials = new ExotelCredentials(parseBasicCredentials(['key1:secret1', 'key2:sec:ret2']));
    expect(codeOf(() => credentials.verify(request(basic('key1:secret1'))))).toBe('ok');
    expect(codeOf(() => credentials.verify(request(basic('key2:sec:ret2'))))).toBe('ok');
    expect(codeOf(() => credentials.verify(request(`basic ${Buffer.from('key1:secret1').toString('base64')}`)))).toBe('ok');
    expect(codeOf(() => credentials.verify(request()))).toBe('401 CREDENTIALS_MISSING');
    expect(codeOf(() => credentials.verify(request('Bearer key1:secret1')))).toBe('401 CREDENTIALS_MISSING');
    expect(codeOf(() => credentials.verify(request(basic('key1:secret2'))))).toBe('401 CREDENTIALS_INVALID');
    expect(codeOf(() => credentials.verify(request(basic('key1:secret1x'))))).toBe('401 CREDENTIALS_INVALID');
    expect(codeOf(() => credentials.verify(request(basic('key2:secret1'))))).toBe('401 CREDENTIALS_INVALID');
  });
});

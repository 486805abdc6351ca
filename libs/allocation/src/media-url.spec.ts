import { MEDIA_SIGNATURE_LENGTH, MediaTarget, MediaUrlSigner, parseMediaPath } from './media-url';
import { WS_PATH } from './validation';

const SECRET = 'first-secret-0123456789';
const OTHER = 'other-secret-0123456789';
const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const TARGET: MediaTarget = { podName: 'voice-agent-3', callSid: 'CA0123:call.x-1', allocationId: 42 };

function signedPath(signer = new MediaUrlSigner([SECRET], 120), target = TARGET, expiresAt = signer.expiryFor(NOW, NOW)): string {
  return signer.path(target, expiresAt);
}

/** Replaces one `/`-separated part of a signed path (0 = pod, 1 = call, 2 = allocation_id, 3 = expiry, 4 = signature). */
function withPart(path: string, index: number, value: string): string {
  const parts = path.slice('/ws/pod/'.length).split('/');
  parts[index] = value;
  return `/ws/pod/${parts.join('/')}`;
}

describe('MediaUrlSigner (SPEC 10.1 signed media URLs)', () => {
  const signer = new MediaUrlSigner([SECRET], 120);

  it('signs pod, call_sid, allocation_id and expiry in the path, base64url, and verifies it', () => {
    const path = signedPath();
    const expiry = Math.floor(NOW / 1000) + 120;
    expect(path).toMatch(new RegExp(`^/ws/pod/voice-agent-3/CA0123:call\\.x-1/42/${expiry}/[A-Za-z0-9_-]{${MEDIA_SIGNATURE_LENGTH}}$`));
    expect(WS_PATH.test(path)).toBe(true);
    expect(signer.verify(path, NOW)).toEqual({ ok: true, target: TARGET, expiresAt: expiry });
    // The same allocation signs to the same URL (a provider retry gets the same document).
    expect(signedPath()).toBe(path);
  });

  it.each([
    ['pod', 0, 'voice-agent-4'],
    ['call_sid', 1, 'CA0123:call.x-2'],
    ['allocation_id', 2, '43'],
    ['allocation_id (non-canonical zero padding)', 2, '042'],
    ['expiry (pushed later)', 3, String(Math.floor(NOW / 1000) + 3600)],
  ])('refuses a tampered %s', (_name, index, value) => {
    expect(signer.verify(withPart(signedPath(), index, value as string), NOW).ok).toBe(false);
  });

  it('refuses a wrong, truncated, extended or re-cased signature', () => {
    const path = signedPath();
    const signature = path.split('/').pop()!;
    const flipped = signature[0] === 'A' ? `B${signature.slice(1)}` : `A${signature.slice(1)}`;
    expect(signer.verify(withPart(path, 4, flipped), NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(signer.verify(withPart(path, 4, signature.slice(0, 42)), NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(signer.verify(withPart(path, 4, signature.slice(0, 22)), NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(signer.verify(withPart(path, 4, `${signature}A`), NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(signer.verify(withPart(path, 4, signature.toUpperCase()), NOW).ok).toBe(signature === signature.toUpperCase());
    // Hex or base64 with padding of the right HMAC is not the issued spelling either.
    expect(signer.verify(path.replace(/\/[^/]+$/, '/'), NOW)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('refuses an expired URL, from the second of its expiry on', () => {
    const path = signedPath();
    const expiry = Math.floor(NOW / 1000) + 120;
    expect(signer.verify(path, expiry * 1000 - 1).ok).toBe(true);
    expect(signer.verify(path, expiry * 1000)).toEqual({ ok: false, reason: 'expired' });
    expect(signer.verify(path, NOW + 3600_000)).toEqual({ ok: false, reason: 'expired' });
  });

  it('refuses a URL signed with another secret, and an unsigned seed path', () => {
    expect(signer.verify(signedPath(new MediaUrlSigner([OTHER], 120)), NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(signer.verify('/ws/pod/voice-agent-3/CA0123', NOW)).toEqual({ ok: false, reason: 'unsigned' });
    expect(signer.verify('/ws/pod/voice-agent-3/CA0123/42/1', NOW).ok).toBe(false);
    expect(signer.verify('/ws/pod/Bad_Pod/CA0123', NOW)).toEqual({ ok: false, reason: 'malformed' });
    expect(signer.verify('/ws/pod/voice-agent-3/CA%30123/42/1/x', NOW)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('rotation: the first secret signs, every listed secret verifies, a dropped one no longer does', () => {
    const old = new MediaUrlSigner([OTHER], 120);
    const rotating = new MediaUrlSigner([SECRET, OTHER], 120);
    const issuedBefore = signedPath(old);
    const issuedDuring = signedPath(rotating);
    expect(issuedDuring).toBe(signedPath(signer));
    expect(rotating.verify(issuedBefore, NOW).ok).toBe(true);
    expect(rotating.verify(issuedDuring, NOW).ok).toBe(true);
    expect(signer.verify(issuedBefore, NOW)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('signs a call record without allocation_id (written before fencing) as 0', () => {
    const path = signedPath(signer, { ...TARGET, allocationId: null });
    expect(path).toContain('/CA0123:call.x-1/0/');
    expect(signer.verify(path, NOW)).toMatchObject({ ok: true, target: { allocationId: null } });
    expect(parseMediaPath(path)).toMatchObject({ allocationId: null, signed: { allocationText: '0' } });
  });

  it('expiry counts from the allocation; a repeat after it is re-signed from now, so it always works', () => {
    expect(signer.expiryFor(NOW, NOW + 5000)).toBe(Math.floor(NOW / 1000) + 120);
    expect(signer.expiryFor(NOW, NOW + 119_000)).toBe(Math.floor(NOW / 1000) + 120);
    expect(signer.expiryFor(NOW, NOW + 120_000)).toBe(Math.floor((NOW + 120_000) / 1000) + 120);
  });

  it('without a secret: the seed URL format, and only the seed form passes', () => {
    const unsigned = new MediaUrlSigner([], 120);
    expect(unsigned.enabled).toBe(false);
    expect(unsigned.path(TARGET, 0)).toBe('/ws/pod/voice-agent-3/CA0123:call.x-1');
    expect(unsigned.verify('/ws/pod/voice-agent-3/CA0123', NOW)).toMatchObject({ ok: true, target: { podName: 'voice-agent-3', callSid: 'CA0123' } });
    expect(unsigned.verify(signedPath(), NOW).ok).toBe(false);
  });
});

describe('WS_PATH', () => {
  it('routes the seed and the signed forms, with the pod in group 1 and the call in group 3', () => {
    expect(WS_PATH.exec('/ws/pod/voice-agent-2/CA123')?.slice(1, 4)).toEqual(['voice-agent-2', 'oice-agent-2', 'CA123']);
    expect(WS_PATH.exec('/ws/pod/voice-agent-2/CA123/7/1767268920/abc')?.slice(1, 7)).toEqual(['voice-agent-2', 'oice-agent-2', 'CA123', '7', '1767268920', 'abc']);
    for (const path of ['/ws/pod/voice-agent-2/CA123/7', '/ws/pod/voice-agent-2/CA123/7/1', '/ws/pod/voice-agent-2/CA123/x/1/abc', '/ws/pod/voice-agent-2/CA123/7/1/a=b', '/ws/pod/voice-agent-2/CA123/7/1/abc/']) {
      expect({ path, routed: WS_PATH.test(path) }).toEqual({ path, routed: false });
    }
  });
});

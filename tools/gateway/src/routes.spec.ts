import { route } from './routes';

describe('gateway routes (SPEC section 2)', () => {
  it.each([
    ['/api/v1/allocate', 'allocationApi'],
    ['/api/v1/release', 'allocationApi'],
    ['/api/v1/connected', 'allocationApi'],
    ['/api/v1/twilio/stream-status', 'webhooks'],
    ['/api/v1/plivo/stream-status', 'webhooks'],
    ['/api/v1/twilio/allocate', 'webhooks'],
    ['/api/v1/plivo/status', 'webhooks'],
    ['/api/v1/exotel/allocate', 'webhooks'],
    ['/agent/voice/breeze-buddy/twilio/callback/test-template', 'webhooks'],
    ['/agent/voice/breeze-buddy/plivo/callback/', 'webhooks'],
    ['/agent/voice/breeze-buddy/exotel/callback/t1', 'webhooks'],
    ['/api/v1/status', 'admin'],
    ['/api/v1/drain', 'admin'],
    ['/api/v1/undrain', 'admin'],
    ['/api/v1/pod/voice-agent-1', 'admin'],
    ['/api/v1/admin/invariants', 'admin'],
    ['/api/v1/admin/events/stream', 'admin'],
    ['/dashboard/', 'admin'],
    ['/dashboard', 'admin'],
    ['/dashboard/dashboard.css', 'admin'],
    ['/ws/pod/voice-agent-2/CA123', 'voiceAgents'],
    // SPEC 10.1's signed form; a truncated signature still routes, so the media check answers it 403.
    ['/ws/pod/voice-agent-2/CA123/42/1767268920/q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c', 'voiceAgents'],
    ['/ws/pod/voice-agent-2/CA123/42/1767268920/q1w2e3', 'voiceAgents'],
    ['/health', 'allocationApi'],
  ])('%s -> %s', (path, upstream) => {
    expect(route(path)).toEqual({ upstream });
  });

  it('keeps metrics off the public path and rejects malformed socket paths', () => {
    expect(route('/metrics')).toMatchObject({ status: 404 });
    expect(route('/ws/pod/Bad_Pod/CA1')).toMatchObject({ status: 400 });
    expect(route('/ws/pod/voice-agent-1/')).toMatchObject({ status: 400 });
    expect(route('/ws/pod/voice-agent-1/CA1/42/1767268920')).toMatchObject({ status: 400 });
    expect(route('/ws/pod/voice-agent-1/CA1/42/1767268920/sig=')).toMatchObject({ status: 400 });
    // The edge's media check is internal: never routed from the public path.
    expect(route('/internal/media-auth')).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
    expect(route('/nope')).toMatchObject({ status: 404 });
  });
});

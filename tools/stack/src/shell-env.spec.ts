import { shellOverrides } from './shell-env';

describe('npm start: shell values reach the apps (SPEC section 8)', () => {
  it('passes app configuration from the shell and keeps the stack-owned wiring', () => {
    const overrides = shellOverrides({
      PUBLIC_BASE_URL: 'https://abc.tunnel.example',
      VOICE_AGENT_BASE_URL: 'wss://abc.tunnel.example',
      TWILIO_AUTH_TOKENS: 'tok',
      TIER_CONFIG: '{"gold":{"type":"exclusive","target":1}}',
      AUTOSCALER_ENABLED: 'true',
      HTTP_PORT: '9999',
      HOST: '0.0.0.0',
      KUBECONFIG: '/elsewhere',
      REDIS_URL: 'redis://other:6379',
      npm_lifecycle_event: 'start',
      NODE_OPTIONS: '--inspect',
      PATH: '/usr/bin',
      EMPTY: '',
    });
    expect(overrides).toEqual({
      PUBLIC_BASE_URL: 'https://abc.tunnel.example',
      VOICE_AGENT_BASE_URL: 'wss://abc.tunnel.example',
      TWILIO_AUTH_TOKENS: 'tok',
      TIER_CONFIG: '{"gold":{"type":"exclusive","target":1}}',
      AUTOSCALER_ENABLED: 'true',
    });
  });
});

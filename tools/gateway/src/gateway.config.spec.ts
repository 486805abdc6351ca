import { EnvReader } from '@smart-router/config';
import { readGatewayConfig } from './gateway.config';

describe('the gateway run alone: its configuration', () => {
  it('defaults to the npm start ports, and takes pools of upstreams', () => {
    expect(readGatewayConfig(new EnvReader({}))).toEqual({
      host: '127.0.0.1',
      port: 8000,
      upstreams: { allocationApi: ['http://127.0.0.1:8080'], webhooks: ['http://127.0.0.1:8081'], admin: ['http://127.0.0.1:8082'], voiceAgents: ['http://127.0.0.1:8090'] },
    });
    const config = readGatewayConfig(new EnvReader({ HOST: '0.0.0.0', HTTP_PORT: '9000', UPSTREAM_ALLOCATION_API: 'http://a:1/, http://b:2' }));
    expect(config).toMatchObject({ host: '0.0.0.0', port: 9000, upstreams: { allocationApi: ['http://a:1', 'http://b:2'] } });
  });

  it('refuses a bad value, naming the variable', () => {
    expect(() => readGatewayConfig(new EnvReader({ UPSTREAM_ADMIN: 'http://ok:1,not a url' }))).toThrow('invalid configuration: UPSTREAM_ADMIN must be a URL');
    expect(() => readGatewayConfig(new EnvReader({ UPSTREAM_WEBHOOKS: 'ftp://x' }))).toThrow('invalid configuration: UPSTREAM_WEBHOOKS must use http:');
    expect(() => readGatewayConfig(new EnvReader({ HTTP_PORT: 'eighty' }))).toThrow('invalid configuration: HTTP_PORT must be an integer');
  });
});

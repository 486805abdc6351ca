import { EnvReader } from '@smart-router/config';
import { readReconcilerConfig } from './reconciler.config';

describe('reconciler config: VERSION_LABEL (SPEC 12)', () => {
  const read = (env: Record<string, string>) => readReconcilerConfig(new EnvReader({ ALLOW_UNAUTHENTICATED: 'true', ...env }));

  it('defaults to app.kubernetes.io/version and takes any Kubernetes label key', () => {
    expect(read({}).versionLabel).toBe('app.kubernetes.io/version');
    expect(read({ VERSION_LABEL: 'agent-version' }).versionLabel).toBe('agent-version');
    expect(read({ VERSION_LABEL: 'example.com/agent_version' }).versionLabel).toBe('example.com/agent_version');
  });

  it.each([['a space', 'agent version'], ['two slashes', 'a/b/c'], ['a trailing dash', 'version-'], ['too long a name', 'v'.repeat(64)]])(
    'stops the app naming the variable for %s',
    (_reason, value) => {
      expect(() => read({ VERSION_LABEL: value })).toThrow(/^invalid configuration: VERSION_LABEL must be a Kubernetes label key/);
    },
  );
});

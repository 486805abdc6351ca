import { dirname, posix } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { EnvReader, parseTierConfig, readCommonSettings, readRedisSettings } from '@smart-router/config';
import { LoadedKustomization, Manifest, loadKustomization } from './kustomize';
import {
  Autoscaler,
  Container,
  Deployment,
  PolicyRule,
  checkAppDeployment,
  checkAutoscaler,
  checkDeploymentBasics,
  checkNetworkPolicies,
  checkRbac,
  checkResource,
  checkServiceAndBudget,
  find,
  nameOf,
  ofKind,
  podLabels,
  resolveEnv,
  selects,
} from './manifest-checks';
import { child, parseNginx, serverListeningOn } from './nginx-config';
import { GATEWAY_PORT, SPEC_APP_PORTS, appNames, configuredDefaultPort, readRepoFile, readmeVariables, repoPath, undocumentedVariables, variablesReadBy } from './repository';

const base = loadKustomization(repoPath('k8s', 'base'));
const production = loadKustomization(repoPath('k8s', 'overlays', 'production'));
const resources = base.resources;
const namespace = base.namespace ?? '';
const apps = appNames();
const KUBE_APPS = ['pod-watcher', 'reconciler'];
/** allocation-api only reviews voice agents' tokens (SPEC 10.1): a token, no namespace-scoped role. */
const TOKEN_APPS = [...KUBE_APPS, 'allocation-api'];
const CLUSTER_ROLES = new Map([['allocation-api', ['system:auth-delegator']]]);

type ConfigMap = Manifest & { data?: Record<string, string> };
type Secret = Manifest & { stringData?: Record<string, string> };
type ServiceAccount = Manifest & { automountServiceAccountToken?: boolean };

function deployment(name: string): Deployment {
  const found = find<Deployment>(resources, 'Deployment', name);
  if (!found) throw new Error(`no Deployment ${name}`);
  return found;
}

function container(name: string): Container {
  return deployment(name).spec?.template?.spec?.containers?.[0] ?? {};
}

describe('k8s/base', () => {
  it('loads every resource, generator and file the kustomization names', () => {
    expect(base.problems).toEqual([]);
    expect(namespace).toBe('voice-system');
    expect(resources.length).toBeGreaterThanOrEqual(40);
  });

  it('uses known kinds and apiVersions, DNS names and one <kind>-<name>.yaml file per resource', () => {
    expect(resources.flatMap(checkResource)).toEqual([]);
    const files = resources.map((resource) => resource.file);
    expect(new Set(files).size).toBe(files.length);
  });

  it.each(apps)('deploys %s with its image, port, /health and /ready probes, resources and a graceful stop', (app) => {
    const port = SPEC_APP_PORTS[app];
    const configured = configuredDefaultPort(app);
    if (configured !== undefined) expect(configured).toBe(port);
    expect(checkAppDeployment(app, port, deployment(app))).toEqual([]);
  });

  it.each(ofKind<Deployment>(resources, 'Deployment').map(nameOf))('gives Deployment %s a Service and a PodDisruptionBudget', (name) => {
    expect(checkDeploymentBasics(deployment(name))).toEqual([]);
    expect(checkServiceAndBudget(deployment(name), resources)).toEqual([]);
  });

  it('autoscales the stateless request paths, allocation-api and webhooks', () => {
    const autoscalers = ofKind<Autoscaler>(resources, 'HorizontalPodAutoscaler');
    expect(autoscalers.map((autoscaler) => autoscaler.spec?.scaleTargetRef?.name).sort()).toEqual(['allocation-api', 'webhooks']);
    expect(autoscalers.flatMap((autoscaler) => checkAutoscaler(autoscaler, resources))).toEqual([]);
    // Everything not autoscaled runs at least two replicas (PDB + rolling updates).
    for (const manifest of ofKind<Deployment>(resources, 'Deployment')) {
      if (autoscalers.some((autoscaler) => autoscaler.spec?.scaleTargetRef?.name === nameOf(manifest))) continue;
      expect({ name: nameOf(manifest), replicas: (manifest.spec?.replicas ?? 1) >= 2 }).toEqual({ name: nameOf(manifest), replicas: true });
    }
  });

  it('grants Kubernetes API access only to pod-watcher, reconciler and (TokenReview only) allocation-api, and only what they use', () => {
    const leaseName = find<ConfigMap>(resources, 'ConfigMap', 'smart-router-config')?.data?.LEASE_NAME ?? '';
    expect(leaseName).toBe('smart-router-pod-watcher');
    const readPods: PolicyRule = { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] };
    const expected = new Map<string, PolicyRule[]>([
      [
        'pod-watcher',
        [
          readPods,
          { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
          { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [leaseName], verbs: ['get', 'update'] },
        ],
      ],
      // The reconciler lists pods and scales the voice-agent StatefulSet (scale subresource only); it never takes a Lease.
      ['reconciler', [readPods, { apiGroups: ['apps'], resources: ['statefulsets/scale'], resourceNames: ['voice-agent'], verbs: ['get', 'patch'] }]],
    ]);
    expect(checkRbac(resources, namespace, expected, CLUSTER_ROLES)).toEqual([]);
  });

  it.each(apps)('mounts a Kubernetes token into %s only when it calls the API', (app) => {
    const account = find<ServiceAccount>(resources, 'ServiceAccount', app);
    const pod = deployment(app).spec?.template?.spec;
    expect(account).toBeDefined();
    const needsToken = TOKEN_APPS.includes(app);
    expect(pod?.automountServiceAccountToken === false).toBe(!needsToken);
    expect(account?.automountServiceAccountToken === false).toBe(!needsToken);
  });

  it('denies ingress by default and keeps the admin API and /metrics off the public path', () => {
    expect(checkNetworkPolicies(resources, 'nginx-router')).toEqual([]);
    const admin = ofKind<Manifest & { spec?: { podSelector?: { matchLabels?: Record<string, string> }; ingress?: { from?: { podSelector?: { matchLabels?: Record<string, string> }; namespaceSelector?: { matchLabels?: Record<string, string> } }[] }[] } }>(resources, 'NetworkPolicy')
      .find((policy) => selects(policy.spec?.podSelector?.matchLabels, podLabels(deployment('admin'))) && (policy.spec?.ingress ?? []).length > 0);
    expect(admin).toBeDefined();
    for (const rule of admin?.spec?.ingress ?? []) {
      for (const peer of rule.from ?? []) {
        // Only the router's pods, or namespaces chosen by label.
        if (peer.podSelector) expect(peer.podSelector.matchLabels).toEqual(deployment('nginx-router').spec?.selector?.matchLabels);
        else expect(Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length).toBeGreaterThan(0);
      }
    }
  });

  describe('configuration', () => {
    const configMap = find<ConfigMap>(resources, 'ConfigMap', 'smart-router-config');
    const secret = find<Secret>(resources, 'Secret', 'smart-router-secrets');

    it("holds the seeds' TIER_CONFIG, valid for the apps' parser", () => {
      const tiers = parseTierConfig(configMap?.data?.TIER_CONFIG ?? '');
      expect([...tiers.keys()]).toEqual(['gold', 'standard', 'basic']);
      expect(tiers.get('basic')).toMatchObject({ type: 'shared', max_concurrent: 3 });
      expect(tiers.has(configMap?.data?.EXTRA_PODS_TIER ?? '')).toBe(true);
    });

    it('holds only documented variables', () => {
      const documented = readmeVariables();
      for (const key of [...Object.keys(configMap?.data ?? {}), ...Object.keys(secret?.stringData ?? {})]) {
        expect({ key, documented: documented.has(key) }).toEqual({ key, documented: true });
      }
    });

    it('ships a Secret template with placeholders, never credentials', () => {
      expect(secret?.stringData).toBeDefined();
      for (const [key, value] of Object.entries(secret?.stringData ?? {})) {
        if (key === 'REDIS_URL') expect(value).toMatch(/^rediss?:\/\/[a-z0-9.-]+:\d+$/);
        else expect({ key, value }).toEqual({ key, value: '' });
      }
    });

    it.each(apps)('gives %s only documented variables it reads, with values its config accepts', (app) => {
      const resolved = resolveEnv(deployment(app), container(app), resources, namespace);
      expect(resolved.problems).toEqual([]);
      expect(undocumentedVariables(app, Object.keys(resolved.env))).toEqual([]);
      const reader = new EnvReader(resolved.env);
      const read = variablesReadBy(app);
      if (read === undefined || read.has('TIER_CONFIG')) expect(() => readCommonSettings(reader)).not.toThrow();
      else expect(() => readRedisSettings(reader)).not.toThrow();
      if (KUBE_APPS.includes(app)) {
        const variables = container(app).env ?? [];
        // The watched namespace is the one the Role grants; each replica has its own identity.
        expect(variables.find((variable) => variable.name === 'NAMESPACE')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.namespace');
        expect(variables.find((variable) => variable.name === 'POD_IDENTITY')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
        expect(resolved.env.KUBECONFIG).toBeUndefined();
      }
    });

    it('gives every app reading a setting the same source for it', () => {
      const sources = new Map<string, string>();
      for (const app of apps) {
        for (const variable of container(app).env ?? []) {
          if (variable.name === 'HTTP_PORT' || variable.name === 'POD_IDENTITY') continue;
          const source = JSON.stringify(variable.valueFrom ?? variable.value);
          expect({ variable: variable.name, app, source }).toEqual({ variable: variable.name, app, source: sources.get(variable.name) ?? source });
          sources.set(variable.name, source);
        }
      }
    });
  });

  describe('nginx-router', () => {
    const router = deployment('nginx-router');
    const nginxContainer = container('nginx-router');
    const generator = base.generators.find((candidate) => candidate.name === 'nginx-router');
    const config = parseNginx(readRepoFile(generator?.files.get('nginx.conf') ?? 'missing'), {
      include: (path) => readRepoFile(generator?.files.get(posix.basename(path)) ?? `missing ${path}`),
    });

    it('mounts its generated configuration where nginx is told to read it', () => {
      expect(generator?.files.has('nginx.conf')).toBe(true);
      const volume = router.spec?.template?.spec?.volumes?.find((candidate) => candidate.configMap?.name === 'nginx-router');
      const mount = nginxContainer.volumeMounts?.find((candidate) => candidate.name === volume?.name);
      const configPath = nginxContainer.args?.[nginxContainer.args.indexOf('-c') + 1] ?? '';
      expect(dirname(configPath)).toBe(mount?.mountPath);
      expect(posix.basename(configPath)).toBe('nginx.conf');
      // Every include is a file of the same ConfigMap.
      for (const include of readRepoFile(generator?.files.get('nginx.conf') ?? '').matchAll(/include\s+(\S+);/g)) {
        expect(dirname(include[1])).toBe(mount?.mountPath);
        expect(generator?.files.has(posix.basename(include[1]))).toBe(true);
      }
    });

    it('serves the public port through its Service and probes its own health endpoint', () => {
      const httpPort = nginxContainer.ports?.find((port) => port.name === 'http')?.containerPort ?? 0;
      expect(httpPort).toBe(GATEWAY_PORT);
      expect(serverListeningOn(config, httpPort)).toBeDefined();
      const healthPort = nginxContainer.ports?.find((port) => port.name === nginxContainer.readinessProbe?.httpGet?.port)?.containerPort ?? 0;
      expect(serverListeningOn(config, healthPort)).toBeDefined();
      expect(nginxContainer.livenessProbe?.httpGet?.path).toBe('/healthz');
    });

    it('lets live calls finish when a router replica stops', () => {
      const shutdown = Number(/^(\d+)s$/.exec(child(config, 'worker_shutdown_timeout')?.args[0] ?? '')?.[1] ?? 0);
      const grace = router.spec?.template?.spec?.terminationGracePeriodSeconds ?? 0;
      expect(shutdown).toBeGreaterThanOrEqual(600);
      expect(grace).toBeGreaterThan(shutdown + 5);
      // SIGTERM is nginx's fast shutdown: the hook must ask for the graceful one first.
      expect(nginxContainer.lifecycle?.preStop?.exec?.command?.join(' ')).toMatch(/nginx .*-s quit/);
    });

    it('routes sockets to pods in the namespace it is deployed to', () => {
      expect(readRepoFile(generator?.files.get('nginx.conf') ?? '')).toContain(`.voice-agent.${namespace}.svc.cluster.local:8000`);
    });
  });
});

describe('k8s/examples/voice-agent-statefulset.yaml (SPEC 10.1)', () => {
  const documents = parseAllDocuments(readRepoFile('k8s', 'examples', 'voice-agent-statefulset.yaml')).map((document) => document.toJS() as Manifest & Record<string, any>);
  const config = find<ConfigMap>(resources, 'ConfigMap', 'smart-router-config')?.data ?? {};

  it('mounts a projected ServiceAccount token for the audience allocation-api accepts, and no API token', () => {
    const set = documents.find((document) => document.kind === 'StatefulSet');
    const pod = set?.spec?.template?.spec;
    expect(config.AGENT_TOKEN_AUDIENCE).toBe('smart-router');
    const projected = (pod?.volumes ?? []).flatMap((volume: any) => volume.projected?.sources ?? []).map((source: any) => source.serviceAccountToken).filter(Boolean);
    expect(projected).toEqual([expect.objectContaining({ audience: config.AGENT_TOKEN_AUDIENCE, path: 'token' })]);
    expect(projected[0].expirationSeconds).toBeGreaterThanOrEqual(600);
    expect(pod?.automountServiceAccountToken).toBe(false);
  });

  it('is what the router watches and routes to: the selector label and the headless Service voice-agent', () => {
    const set = documents.find((document) => document.kind === 'StatefulSet');
    const [key, value] = (config.POD_LABEL_SELECTOR ?? '').split('=');
    expect(set?.spec?.template?.metadata?.labels?.[key]).toBe(value);
    expect(set?.spec?.serviceName).toBe('voice-agent');
    expect(documents.find((document) => document.kind === 'Service')).toMatchObject({ metadata: { name: 'voice-agent' }, spec: { clusterIP: 'None' } });
    for (const document of documents) expect(document.metadata?.namespace).toBe(namespace);
  });
});

describe('k8s/overlays/production', () => {
  const patched = (overlay: LoadedKustomization) => overlay.patches.map(({ manifest }) => `${String(manifest.kind)}/${nameOf(manifest)}`);

  it('loads its base and every patch', () => {
    expect(production.problems).toEqual([]);
    expect(production.resources.length).toBe(resources.length);
  });

  it('patches only objects the base defines', () => {
    for (const target of patched(production)) {
      const [kind, name] = target.split('/');
      expect({ target, exists: find(resources, kind, name) !== undefined }).toEqual({ target, exists: true });
    }
  });

  it('replaces every app image with a pinned one and keeps the real Secret out of git', () => {
    const images = ofKind<Deployment>(resources, 'Deployment').map((manifest) => (manifest.spec?.template?.spec?.containers?.[0]?.image ?? '').split(':')[0]);
    for (const app of apps) expect(production.images.find((image) => image.name === `smart-router/${app}`)?.newTag).toMatch(/^\d+\.\d+\.\d+$/);
    for (const image of production.images) expect(images).toContain(image.name);
    const deleted = production.patches.filter(({ manifest }) => manifest.$patch === 'delete').map(({ manifest }) => `${String(manifest.kind)}/${nameOf(manifest)}`);
    expect(deleted).toEqual(['Secret/smart-router-secrets']);
  });

  it('sets public URLs the apps accept', () => {
    const data = (production.patches.find(({ manifest }) => manifest.kind === 'ConfigMap')?.manifest as ConfigMap | undefined)?.data ?? {};
    expect(data.VOICE_AGENT_BASE_URL).toMatch(/^wss:\/\//);
    expect(data.PUBLIC_BASE_URL).toMatch(/^https:\/\//);
    const settings = readCommonSettings(new EnvReader({ ...find<ConfigMap>(resources, 'ConfigMap', 'smart-router-config')?.data, ...data }));
    expect(settings.voiceAgentBaseUrl).toBe(data.VOICE_AGENT_BASE_URL);
  });
});

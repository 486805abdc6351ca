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
  checkEgressPolicies,
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
import { ADMIN_ACCESS_INCLUDE, renderAdminAccess } from './admin-access';
import { actionOf, child, children, parseNginx, selectLocation, serverListeningOn } from './nginx-config';
import { GATEWAY_PORT, SPEC_APP_PORTS, appNames, configuredDefaultPort, readRepoFile, readmeVariables, repoPath, splitFileVariables, undocumentedVariables, variablesReadBy } from './repository';

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
      // The reconciler lists pods, deletes a dead voice agent's pod (HEARTBEAT_DEAD_ACTION=delete, SPEC 11) and scales
      // the voice-agent StatefulSet (scale subresource only); it never takes a Lease.
      ['reconciler', [readPods, { apiGroups: [''], resources: ['pods'], verbs: ['delete'] }, { apiGroups: ['apps'], resources: ['statefulsets/scale'], resourceNames: ['voice-agent', 'voice-agent-v2'], verbs: ['get', 'patch'] }]],
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
      // A Secret key not named like its variable (media-url-secret) documents the variables that read it.
      const readAs = (key: string) => apps.flatMap((app) => (container(app).env ?? [])
        .filter((variable) => variable.valueFrom?.secretKeyRef?.name === 'smart-router-secrets' && variable.valueFrom.secretKeyRef.key === key)
        .map((variable) => variable.name));
      const keys = [...Object.keys(configMap?.data ?? {}), ...Object.keys(secret?.stringData ?? {}).flatMap((key) => (documented.has(key) ? [key] : readAs(key).length > 0 ? readAs(key) : [key]))];
      for (const key of keys) {
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
      // Mounted files exist only in the pod: each lies under a read-only mount, the rest is parsed.
      const { env, files } = splitFileVariables(resolved.env);
      for (const [variable, path] of Object.entries(files)) {
        const mount = (container(app).volumeMounts ?? []).find((candidate) => path.startsWith(`${candidate.mountPath}/`));
        expect({ variable, path, readOnly: mount?.readOnly }).toEqual({ variable, path, readOnly: true });
      }
      const reader = new EnvReader(env);
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

    it('never sets ALLOW_UNAUTHENTICATED, in the base or the production overlay: apps fail closed (SPEC 10.1)', () => {
      const manifests = [...base.resources, ...production.resources, ...production.patches].map(({ manifest }) => manifest);
      for (const manifest of manifests) {
        expect({ manifest: `${manifest.kind}/${nameOf(manifest)}`, mentions: JSON.stringify(manifest).includes('ALLOW_UNAUTHENTICATED') })
          .toEqual({ manifest: `${manifest.kind}/${nameOf(manifest)}`, mentions: false });
      }
    });

    it('releases a call nobody connects after 20 s and trusts forwarded headers only from the pod network', () => {
      expect(configMap?.data?.CONNECT_TIMEOUT_SECONDS).toBe('20');
      expect(configMap?.data?.TRUSTED_PROXIES).toBe('10.0.0.0/8');
      for (const app of apps) {
        expect({ app, env: resolveEnv(deployment(app), container(app), resources, namespace).env.TRUSTED_PROXIES }).toEqual({ app, env: '10.0.0.0/8' });
      }
      expect(resolveEnv(deployment('webhooks'), container('webhooks'), resources, namespace).env.PROVIDERS).toBe('twilio,plivo,exotel');
    });

    it('gives each app its own Redis ACL user and only its own password (SPEC 10.1)', () => {
      const users = find<Secret>(resources, 'Secret', 'smart-router-redis-users');
      expect(Object.keys(users?.stringData ?? {}).sort()).toEqual([...apps].sort());
      for (const value of Object.values(users?.stringData ?? {})) expect(value).toBe('');
      for (const app of apps) {
        const variables = container(app).env ?? [];
        expect(variables.find((variable) => variable.name === 'REDIS_USERNAME')?.value).toBe(app);
        const volumes = deployment(app).spec?.template?.spec?.volumes ?? [];
        const password = volumes.find((volume) => volume.secret?.secretName === 'smart-router-redis-users');
        expect(password?.secret?.items).toEqual([{ key: app, path: 'password' }]);
        expect(volumes.find((volume) => volume.secret?.secretName === 'smart-router-redis-tls')?.secret?.items).toEqual([{ key: 'ca.crt', path: 'ca.crt' }]);
      }
      expect(secret?.stringData?.REDIS_URL).toMatch(/^rediss:\/\//);
    });

    it('gives every app reading a setting the same source for it', () => {
      const sources = new Map<string, string>();
      for (const app of apps) {
        for (const variable of container(app).env ?? []) {
          // Per app by design: its port, its identity, its own Redis ACL user (SPEC 10.1).
          if (variable.name === 'HTTP_PORT' || variable.name === 'POD_IDENTITY' || variable.name === 'REDIS_USERNAME') continue;
          // Whether a key must exist is per app (webhooks need the signing tokens, the reconciler only may read them).
          const { optional: _optional, ...secretKeyRef } = variable.valueFrom?.secretKeyRef ?? {};
          const source = JSON.stringify(variable.valueFrom?.secretKeyRef ? { ...variable.valueFrom, secretKeyRef } : variable.valueFrom ?? variable.value);
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
    const adminAllowCidrs = find<ConfigMap>(resources, 'ConfigMap', 'smart-router-config')?.data?.ADMIN_ALLOW_CIDRS;
    const config = parseNginx(readRepoFile(generator?.files.get('nginx.conf') ?? 'missing'), {
      include: (path) => (path === ADMIN_ACCESS_INCLUDE ? renderAdminAccess(adminAllowCidrs).text : readRepoFile(generator?.files.get(posix.basename(path)) ?? `missing ${path}`)),
    });
    const mountOf = (volume: string) => nginxContainer.volumeMounts?.find((candidate) => candidate.name === volume)?.mountPath;

    it('mounts its generated configuration where nginx is told to read it', () => {
      expect(generator?.files.has('nginx.conf')).toBe(true);
      const volume = router.spec?.template?.spec?.volumes?.find((candidate) => candidate.configMap?.name === 'nginx-router');
      const mount = nginxContainer.volumeMounts?.find((candidate) => candidate.name === volume?.name);
      const configPath = nginxContainer.args?.[nginxContainer.args.indexOf('-c') + 1] ?? '';
      expect(dirname(configPath)).toBe(mount?.mountPath);
      expect(posix.basename(configPath)).toBe('nginx.conf');
      // Every include is a file of the same ConfigMap, or the allow-list its start.sh renders.
      for (const include of readRepoFile(generator?.files.get('nginx.conf') ?? '').matchAll(/include\s+(\S+);/g)) {
        if (include[1] === ADMIN_ACCESS_INCLUDE) continue;
        expect(dirname(include[1])).toBe(mount?.mountPath);
        expect(generator?.files.has(posix.basename(include[1]))).toBe(true);
      }
      // start.sh (from the ConfigMap) renders the allow-list on the writable /tmp, then runs nginx.
      expect(generator?.files.has('start.sh')).toBe(true);
      expect(nginxContainer.command).toEqual(['/bin/sh', `${mount?.mountPath}/start.sh`]);
      expect(ADMIN_ACCESS_INCLUDE.startsWith(`${mountOf('tmp')}/`)).toBe(true);
      expect(nginxContainer.args?.[0]).toBe('nginx');
    });

    it('serves https on 443 through its Service, plain HTTP only as a redirect, and probes its own health endpoint', () => {
      const httpsPort = nginxContainer.ports?.find((port) => port.name === 'https')?.containerPort ?? 0;
      const httpPort = nginxContainer.ports?.find((port) => port.name === 'http')?.containerPort ?? 0;
      expect(children(serverListeningOn(config, httpsPort)?.block, 'listen').map((listen) => listen.args)).toEqual([[String(httpsPort), 'ssl']]);
      const service = find<Manifest & { spec?: { ports?: { name?: string; port?: number; targetPort?: string }[] } }>(resources, 'Service', 'nginx-router');
      expect(service?.spec?.ports?.map((port) => [port.port, port.targetPort])).toEqual([[443, 'https'], [80, 'http']]);
      // The plain port redirects everything to https, except the seeds' health checks.
      const plain = serverListeningOn(config, httpPort);
      expect(plain).toBeDefined();
      for (const path of ['/', '/api/v1/allocate', '/api/v1/twilio/allocate', '/api/v1/status', '/dashboard/', '/ws/pod/voice-agent-0/CA1']) {
        const selected = selectLocation(plain!, path);
        expect({ path, action: selected && actionOf(selected.location, selected.captures) }).toEqual({ path, action: { status: 308, body: 'https://$host$request_uri' } });
      }
      for (const path of ['/health', '/ready']) expect(actionOf(selectLocation(plain!, path)!.location, {})).toEqual({ proxyPass: 'http://allocation_api' });
      expect(httpsPort).not.toBe(GATEWAY_PORT);
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

    it('terminates TLS with the certificate of the Secret smart-router-tls, and sends HSTS', () => {
      const tls = serverListeningOn(config, 8443);
      const volume = router.spec?.template?.spec?.volumes?.find((candidate) => candidate.secret?.secretName === 'smart-router-tls');
      const mount = nginxContainer.volumeMounts?.find((candidate) => candidate.name === volume?.name);
      expect(mount?.readOnly).toBe(true);
      expect(child(tls?.block, 'ssl_certificate')?.args).toEqual([`${mount?.mountPath}/tls.crt`]);
      expect(child(tls?.block, 'ssl_certificate_key')?.args).toEqual([`${mount?.mountPath}/tls.key`]);
      expect(child(tls?.block, 'ssl_protocols')?.args.every((protocol) => /^TLSv1\.[23]$/.test(protocol))).toBe(true);
      // On the server (no location sets add_header, which would drop it), on nginx's own answers too.
      expect(children(tls?.block, 'add_header').map((header) => header.args)).toEqual([['Strict-Transport-Security', 'max-age=31536000; includeSubDomains', 'always']]);
      for (const location of children(tls?.block, 'location')) expect(child(location.block, 'add_header')).toBeUndefined();
    });

    it('admits only ADMIN_ALLOW_CIDRS to the admin routes: narrow by default, a bad value stops the pod naming it', () => {
      expect(nginxContainer.env?.find((variable) => variable.name === 'ADMIN_ALLOW_CIDRS')?.valueFrom?.configMapKeyRef).toEqual({ name: 'smart-router-config', key: 'ADMIN_ALLOW_CIDRS' });
      expect(adminAllowCidrs).toBe('127.0.0.1');
      expect(renderAdminAccess(adminAllowCidrs)).toMatchObject({ status: 0, text: 'allow 127.0.0.1;\ndeny all;\n' });
      expect(renderAdminAccess(undefined)).toMatchObject({ status: 0, text: 'allow 127.0.0.1;\ndeny all;\n' });
      expect(renderAdminAccess('10.20.0.0/16, 192.0.2.7,fd00::/8')).toMatchObject({ status: 0, text: 'allow 10.20.0.0/16;\nallow 192.0.2.7;\nallow fd00::/8;\ndeny all;\n' });
      for (const bad of ['all', '10.0.0.0/8;allow all', '10.0.0.0/33', '*', 'example.com']) {
        const rendered = renderAdminAccess(bad);
        expect({ bad, status: rendered.status, text: rendered.text }).toEqual({ bad, status: 1, text: '' });
        expect(rendered.stderr).toMatch(/ADMIN_ALLOW_CIDRS/);
      }
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
    expect(deleted).toEqual(['Secret/smart-router-secrets', 'Secret/smart-router-redis-users', 'Secret/smart-router-redis-tls']);
  });

  it('sets public URLs the apps accept', () => {
    const data = (production.patches.find(({ manifest }) => manifest.kind === 'ConfigMap')?.manifest as ConfigMap | undefined)?.data ?? {};
    expect(data.VOICE_AGENT_BASE_URL).toMatch(/^wss:\/\//);
    expect(data.PUBLIC_BASE_URL).toMatch(/^https:\/\//);
    const settings = readCommonSettings(new EnvReader({ ...find<ConfigMap>(resources, 'ConfigMap', 'smart-router-config')?.data, ...data }));
    expect(settings.voiceAgentBaseUrl).toBe(data.VOICE_AGENT_BASE_URL);
  });
});

describe('SPEC 10 hardening of k8s/base', () => {
  type Namespace = Manifest & { metadata?: { labels?: Record<string, string> } };

  it('enforces the restricted Pod Security Standard on the namespace', () => {
    const labels = find<Namespace>(resources, 'Namespace', namespace)?.metadata?.labels ?? {};
    for (const mode of ['enforce', 'audit', 'warn']) expect(labels[`pod-security.kubernetes.io/${mode}`]).toBe('restricted');
  });

  it('denies egress by default: DNS, then only Redis, the Kubernetes API for those that call it, and peers', () => {
    expect(checkEgressPolicies(resources, ['allocation-api', ...KUBE_APPS])).toEqual([]);
  });

  it.each(ofKind<Deployment>(resources, 'Deployment').map(nameOf))('bounds the /tmp emptyDir of %s', (name) => {
    const volumes = deployment(name).spec?.template?.spec?.volumes ?? [];
    const scratch = volumes.filter((volume) => volume.emptyDir !== undefined);
    expect(scratch.length).toBeGreaterThan(0);
    for (const volume of scratch) expect({ volume: volume.name, sizeLimit: volume.emptyDir?.sizeLimit }).toEqual({ volume: volume.name, sizeLimit: expect.stringMatching(/^\d+Mi$/) });
  });

  it('frees a pod nobody connects to in seconds (CONNECT_TIMEOUT_SECONDS 20)', () => {
    expect(find<ConfigMap>(resources, 'ConfigMap', 'smart-router-config')?.data?.CONNECT_TIMEOUT_SECONDS).toBe('20');
  });

  it('the reconciler reads provider tokens only if present (least privilege: REST-only tokens need no webhook signing tokens)', () => {
    const providerTokens = (container('reconciler').env ?? []).filter((variable) => /^(TWILIO|PLIVO)_(API_)?AUTH_TOKENS?$/.test(variable.name ?? ''));
    expect(providerTokens.map((variable) => variable.name).sort()).toEqual(['PLIVO_API_AUTH_TOKEN', 'PLIVO_AUTH_TOKENS', 'TWILIO_API_AUTH_TOKEN', 'TWILIO_AUTH_TOKENS']);
    for (const variable of providerTokens) expect({ name: variable.name, optional: variable.valueFrom?.secretKeyRef?.optional }).toEqual({ name: variable.name, optional: true });
  });

  it('never sets ALLOW_UNAUTHENTICATED, in the base or the production overlay', () => {
    for (const loaded of [...resources, ...production.patches]) expect({ file: loaded.file, sets: JSON.stringify(loaded.manifest).includes('ALLOW_UNAUTHENTICATED') }).toEqual({ file: loaded.file, sets: false });
  });

  it("admits to admin only the production overlay's operator networks, never a catch-all", () => {
    const data = (production.patches.find(({ manifest }) => manifest.kind === 'ConfigMap')?.manifest as ConfigMap | undefined)?.data ?? {};
    const rendered = renderAdminAccess(data.ADMIN_ALLOW_CIDRS);
    expect(rendered.status).toBe(0);
    expect(rendered.text).not.toMatch(/allow (0\.0\.0\.0\/0|::\/0|10\.0\.0\.0\/8|172\.16\.0\.0\/12|192\.168\.0\.0\/16);/);
    expect(rendered.text.endsWith('deny all;\n')).toBe(true);
  });
});

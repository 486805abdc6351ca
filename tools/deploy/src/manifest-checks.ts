import { basename } from 'node:path';
import type { LoadedManifest, Manifest } from './kustomize';

/**
 * Offline checks of the Kubernetes manifests. Each returns the problems it
 * found as sentences naming the object, so a failing test says what to fix;
 * an empty list means the check passed.
 */

export const API_VERSIONS: Readonly<Record<string, string>> = {
  Namespace: 'v1',
  ConfigMap: 'v1',
  Secret: 'v1',
  ServiceAccount: 'v1',
  Service: 'v1',
  Deployment: 'apps/v1',
  PodDisruptionBudget: 'policy/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
  Role: 'rbac.authorization.k8s.io/v1',
  RoleBinding: 'rbac.authorization.k8s.io/v1',
  ClusterRoleBinding: 'rbac.authorization.k8s.io/v1',
  NetworkPolicy: 'networking.k8s.io/v1',
};

type Labels = Record<string, string>;

export interface Probe {
  httpGet?: { path?: string; port?: string | number };
  exec?: { command?: string[] };
  periodSeconds?: number;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    configMapKeyRef?: { name?: string; key?: string; optional?: boolean };
    secretKeyRef?: { name?: string; key?: string; optional?: boolean };
    fieldRef?: { fieldPath?: string };
  };
}

export interface Container {
  name?: string;
  image?: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort?: number }[];
  env?: EnvVar[];
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command?: string[] }; sleep?: { seconds?: number } } };
  securityContext?: { runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: { name?: string; mountPath?: string; readOnly?: boolean }[];
}

export interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  containers?: Container[];
  volumes?: { name?: string; configMap?: { name?: string }; secret?: { secretName?: string; defaultMode?: number; items?: { key?: string; path?: string }[] }; emptyDir?: { sizeLimit?: string; medium?: string } }[];
}

export interface Deployment extends Manifest {
  spec?: {
    replicas?: number;
    selector?: { matchLabels?: Labels };
    strategy?: { type?: string; rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string } };
    template?: { metadata?: { labels?: Labels }; spec?: PodSpec };
  };
}

export interface Service extends Manifest {
  spec?: { selector?: Labels; ports?: { name?: string; port?: number; targetPort?: string | number }[] };
}

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs?: string[];
}

export interface NetworkPolicyPeer {
  podSelector?: { matchLabels?: Labels };
  namespaceSelector?: { matchLabels?: Labels };
  ipBlock?: { cidr?: string; except?: string[] };
}

export interface NetworkPolicy extends Manifest {
  spec?: {
    podSelector?: { matchLabels?: Labels };
    policyTypes?: string[];
    ingress?: { from?: NetworkPolicyPeer[]; ports?: { port?: number | string }[] }[];
    egress?: { to?: NetworkPolicyPeer[]; ports?: { port?: number | string; protocol?: string }[] }[];
  };
}

export function nameOf(manifest: Manifest): string {
  return typeof manifest.metadata?.name === 'string' ? manifest.metadata.name : '';
}

export function ofKind<T extends Manifest>(resources: LoadedManifest[], kind: string): T[] {
  return resources.filter((resource) => resource.manifest.kind === kind).map((resource) => resource.manifest as T);
}

export function find<T extends Manifest>(resources: LoadedManifest[], kind: string, name: string): T | undefined {
  return ofKind<T>(resources, kind).find((manifest) => nameOf(manifest) === name);
}

/** Every label of `selector` is on `labels` (an empty selector selects nothing here). */
export function selects(selector: Labels | undefined, labels: Labels | undefined): boolean {
  const entries = Object.entries(selector ?? {});
  return entries.length > 0 && entries.every(([key, value]) => labels?.[key] === value);
}

export function podLabels(deployment: Deployment): Labels {
  return deployment.spec?.template?.metadata?.labels ?? {};
}

export function containerPort(container: Container, port: string | number | undefined): number | undefined {
  if (typeof port === 'number') return container.ports?.some((entry) => entry.containerPort === port) ? port : undefined;
  return container.ports?.find((entry) => entry.name === port)?.containerPort;
}

/** Known kind, its apiVersion, a DNS-1123 name, and a file named `<kind>-….yaml`. */
export function checkResource({ file, manifest }: LoadedManifest): string[] {
  const kind = typeof manifest.kind === 'string' ? manifest.kind : '';
  const where = `${file} (${kind || 'no kind'} ${nameOf(manifest) || 'unnamed'})`;
  const problems: string[] = [];
  if (!(kind in API_VERSIONS)) return [`${where}: kind is not one these manifests use (${Object.keys(API_VERSIONS).join(', ')})`];
  if (manifest.apiVersion !== API_VERSIONS[kind]) problems.push(`${where}: apiVersion ${String(manifest.apiVersion)}, expected ${API_VERSIONS[kind]}`);
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(nameOf(manifest))) problems.push(`${where}: metadata.name is not a DNS-1123 label`);
  if (!basename(file).startsWith(kind.toLowerCase())) problems.push(`${where}: file should be named ${kind.toLowerCase()}-<name>.yaml`);
  if (manifest.metadata?.labels?.['app.kubernetes.io/part-of'] !== 'smart-router') problems.push(`${where}: missing label app.kubernetes.io/part-of: smart-router`);
  return problems;
}

function preStopSeconds(container: Container): number | undefined {
  const preStop = container.lifecycle?.preStop;
  if (preStop?.sleep?.seconds !== undefined) return preStop.sleep.seconds;
  const command = preStop?.exec?.command?.join(' ');
  if (command === undefined) return undefined;
  return Number(/sleep\s+(\d+)/.exec(command)?.[1] ?? 0);
}

function probeProblems(where: string, container: Container, kind: string, probe: Probe | undefined, path?: string): string[] {
  if (!probe?.httpGet) return [`${where}: no HTTP ${kind}`];
  const problems: string[] = [];
  if (path !== undefined && probe.httpGet.path !== path) problems.push(`${where}: ${kind} probes ${String(probe.httpGet.path)}, expected ${path}`);
  if (containerPort(container, probe.httpGet.port) === undefined) problems.push(`${where}: ${kind} port ${String(probe.httpGet.port)} is not a container port`);
  return problems;
}

/** What every Deployment here must have: rollouts that never drop capacity, probes, resources, a graceful stop. */
export function checkDeploymentBasics(deployment: Deployment): string[] {
  const where = `Deployment ${nameOf(deployment)}`;
  const problems: string[] = [];
  const spec = deployment.spec;
  const pod = spec?.template?.spec;
  const containers = pod?.containers ?? [];
  if (containers.length === 0) return [`${where}: no containers`];
  if (!selects(spec?.selector?.matchLabels, podLabels(deployment))) problems.push(`${where}: selector does not match its pod labels`);
  if (spec?.strategy?.type !== 'RollingUpdate' || spec.strategy.rollingUpdate?.maxUnavailable !== 0) problems.push(`${where}: needs a RollingUpdate with maxUnavailable 0`);
  const grace = pod?.terminationGracePeriodSeconds ?? 30;
  if (pod?.terminationGracePeriodSeconds === undefined || grace < 30) problems.push(`${where}: terminationGracePeriodSeconds must be set to at least 30`);
  if (pod?.securityContext?.runAsNonRoot !== true) problems.push(`${where}: pod must set runAsNonRoot`);
  for (const container of containers) {
    const at = `${where} container ${String(container.name)}`;
    const image = container.image ?? '';
    if (!/:[A-Za-z0-9._-]+$/.test(image) || image.endsWith(':latest')) problems.push(`${at}: image "${image}" needs a pinned tag`);
    for (const group of ['requests', 'limits'] as const) {
      for (const resource of ['cpu', 'memory']) {
        if (container.resources?.[group]?.[resource] === undefined) problems.push(`${at}: resources.${group}.${resource} missing`);
      }
    }
    problems.push(...probeProblems(at, container, 'livenessProbe', container.livenessProbe));
    problems.push(...probeProblems(at, container, 'readinessProbe', container.readinessProbe));
    const stop = preStopSeconds(container);
    if (stop === undefined) problems.push(`${at}: no preStop hook (endpoints must be removed before SIGTERM)`);
    // SPEC section 2: an app finishes within 10 s of SIGTERM, after the preStop pause.
    else if (grace < stop + 10) problems.push(`${at}: terminationGracePeriodSeconds ${grace} < preStop ${stop} s + 10 s of shutdown`);
    if (container.securityContext?.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation must be false`);
    if (container.securityContext?.readOnlyRootFilesystem !== true) problems.push(`${at}: readOnlyRootFilesystem must be true`);
  }
  return problems;
}

/** One of the five Nx apps: its image, port, /health and /ready probes, identity. */
export function checkAppDeployment(app: string, port: number, deployment: Deployment): string[] {
  const where = `Deployment ${app}`;
  const problems = checkDeploymentBasics(deployment);
  const pod = deployment.spec?.template?.spec;
  const container = pod?.containers?.find((entry) => entry.name === app);
  if (!container) return [...problems, `${where}: no container named ${app}`];
  if (!new RegExp(`(^|/)smart-router/${app}:\\d+\\.\\d+\\.\\d+$`).test(container.image ?? '')) problems.push(`${where}: image should be smart-router/${app}:<version>, got ${String(container.image)}`);
  if (containerPort(container, 'http') !== port) problems.push(`${where}: container port "http" should be ${port}`);
  const literal = (name: string) => container.env?.find((entry) => entry.name === name)?.value;
  if (literal('HTTP_PORT') !== String(port)) problems.push(`${where}: HTTP_PORT should be "${port}"`);
  if (literal('HOST') !== '0.0.0.0') problems.push(`${where}: HOST should be "0.0.0.0" (the default binds loopback only)`);
  problems.push(...probeProblems(where, container, 'livenessProbe', container.livenessProbe, '/health'));
  problems.push(...probeProblems(where, container, 'readinessProbe', container.readinessProbe, '/ready'));
  if (pod?.serviceAccountName !== app) problems.push(`${where}: serviceAccountName should be ${app}`);
  return problems;
}

/** A Service that selects the Deployment's pods and targets one of its ports, and a PodDisruptionBudget. */
export function checkServiceAndBudget(deployment: Deployment, resources: LoadedManifest[]): string[] {
  const where = `Deployment ${nameOf(deployment)}`;
  const labels = podLabels(deployment);
  const container = deployment.spec?.template?.spec?.containers?.[0] ?? {};
  const problems: string[] = [];
  const services = ofKind<Service>(resources, 'Service').filter((service) => selects(service.spec?.selector, labels));
  if (services.length === 0) problems.push(`${where}: no Service selects its pods`);
  for (const service of services) {
    for (const port of service.spec?.ports ?? []) {
      if (containerPort(container, port.targetPort) === undefined) problems.push(`Service ${nameOf(service)}: targetPort ${String(port.targetPort)} is not a port of ${nameOf(deployment)}`);
    }
  }
  const budgets = ofKind<Manifest & { spec?: { selector?: { matchLabels?: Labels }; minAvailable?: unknown; maxUnavailable?: unknown } }>(resources, 'PodDisruptionBudget')
    .filter((budget) => selects(budget.spec?.selector?.matchLabels, labels));
  if (budgets.length !== 1) problems.push(`${where}: ${budgets.length} PodDisruptionBudgets select its pods, expected 1`);
  for (const budget of budgets) {
    if (budget.spec?.minAvailable === undefined && budget.spec?.maxUnavailable === undefined) problems.push(`PodDisruptionBudget ${nameOf(budget)}: sets neither minAvailable nor maxUnavailable`);
  }
  return problems;
}

export interface Autoscaler extends Manifest {
  spec?: { scaleTargetRef?: { apiVersion?: string; kind?: string; name?: string }; minReplicas?: number; maxReplicas?: number; metrics?: unknown[] };
}

export function checkAutoscaler(autoscaler: Autoscaler, resources: LoadedManifest[]): string[] {
  const where = `HorizontalPodAutoscaler ${nameOf(autoscaler)}`;
  const target = autoscaler.spec?.scaleTargetRef;
  const problems: string[] = [];
  const deployment = target?.kind === 'Deployment' && target.apiVersion === 'apps/v1' ? find<Deployment>(resources, 'Deployment', target.name ?? '') : undefined;
  if (!deployment) return [`${where}: scaleTargetRef ${JSON.stringify(target)} is not a Deployment here`];
  // An apply would reset the replica count the autoscaler chose.
  if (deployment.spec?.replicas !== undefined) problems.push(`${where}: Deployment ${nameOf(deployment)} sets replicas, which the autoscaler owns`);
  const min = autoscaler.spec?.minReplicas ?? 1;
  // One replica plus a PodDisruptionBudget would block every node drain.
  if (min < 2) problems.push(`${where}: minReplicas ${min} < 2`);
  if ((autoscaler.spec?.maxReplicas ?? 0) <= min) problems.push(`${where}: maxReplicas must exceed minReplicas`);
  if ((autoscaler.spec?.metrics ?? []).length === 0) problems.push(`${where}: no metrics`);
  return problems;
}

function normalizeRule(rule: PolicyRule): string {
  const sorted = (values: string[] | undefined) => [...(values ?? [])].sort();
  return JSON.stringify({ apiGroups: sorted(rule.apiGroups), resources: sorted(rule.resources), resourceNames: sorted(rule.resourceNames), verbs: sorted(rule.verbs) });
}

/**
 * The ServiceAccounts bound to Roles, and each one's rules, are exactly
 * `expected`; cluster-wide, only the built-in ClusterRoles in
 * `expectedClusterRoles` (per ServiceAccount) are bound, and no ClusterRole is
 * defined here.
 */
export function checkRbac(resources: LoadedManifest[], namespace: string, expected: Map<string, PolicyRule[]>, expectedClusterRoles: Map<string, string[]> = new Map()): string[] {
  const problems: string[] = [];
  for (const manifest of ofKind(resources, 'ClusterRole')) problems.push(`ClusterRole ${nameOf(manifest)}: no cluster-wide role of our own is needed`);
  const granted = new Map<string, PolicyRule[]>();
  type Binding = Manifest & { roleRef?: { apiGroup?: string; kind?: string; name?: string }; subjects?: { kind?: string; name?: string; namespace?: string }[] };
  const clusterBound = new Map<string, string[]>();
  for (const binding of ofKind<Binding>(resources, 'ClusterRoleBinding')) {
    const where = `ClusterRoleBinding ${nameOf(binding)}`;
    const role = binding.roleRef?.kind === 'ClusterRole' ? binding.roleRef.name ?? '' : '';
    for (const subject of binding.subjects ?? []) {
      const account = subject.name ?? '';
      if (subject.kind !== 'ServiceAccount' || !find(resources, 'ServiceAccount', account) || subject.namespace !== namespace) {
        problems.push(`${where}: subject ${JSON.stringify(subject)} is not a ServiceAccount of ${namespace} here`);
        continue;
      }
      if (!(expectedClusterRoles.get(account) ?? []).includes(role)) problems.push(`${where}: ServiceAccount ${account} must not be bound to ClusterRole ${role || JSON.stringify(binding.roleRef)}`);
      clusterBound.set(account, [...(clusterBound.get(account) ?? []), role]);
    }
  }
  for (const [account, roles] of expectedClusterRoles) {
    for (const role of roles) if (!(clusterBound.get(account) ?? []).includes(role)) problems.push(`ServiceAccount ${account} is not bound to ClusterRole ${role}`);
  }
  for (const binding of ofKind<Binding>(resources, 'RoleBinding')) {
    const where = `RoleBinding ${nameOf(binding)}`;
    const role = binding.roleRef?.kind === 'Role' ? find<Manifest & { rules?: PolicyRule[] }>(resources, 'Role', binding.roleRef.name ?? '') : undefined;
    if (!role) {
      problems.push(`${where}: roleRef ${JSON.stringify(binding.roleRef)} is not a Role here`);
      continue;
    }
    for (const subject of binding.subjects ?? []) {
      if (subject.kind !== 'ServiceAccount' || !find(resources, 'ServiceAccount', subject.name ?? '')) {
        problems.push(`${where}: subject ${JSON.stringify(subject)} is not a ServiceAccount here`);
        continue;
      }
      if (subject.namespace !== namespace) problems.push(`${where}: subject ${String(subject.name)} is in namespace ${String(subject.namespace)}, expected ${namespace}`);
      granted.set(subject.name ?? '', [...(granted.get(subject.name ?? '') ?? []), ...(role.rules ?? [])]);
    }
  }
  for (const [account, rules] of granted) {
    if (!expected.has(account)) problems.push(`ServiceAccount ${account} is granted ${rules.length} rules but needs no Kubernetes API access`);
  }
  for (const [account, rules] of expected) {
    const actual = (granted.get(account) ?? []).map(normalizeRule).sort();
    const wanted = rules.map(normalizeRule).sort();
    if (JSON.stringify(actual) !== JSON.stringify(wanted)) problems.push(`ServiceAccount ${account}: rules ${actual.join(' ')} differ from the least-privilege set ${wanted.join(' ')}`);
  }
  return problems;
}

/**
 * Ingress is denied by default; each Deployment has its own policy; only the
 * public router admits traffic from anywhere; policy ports are real ports.
 */
export function checkNetworkPolicies(resources: LoadedManifest[], publicDeployment: string): string[] {
  const problems: string[] = [];
  const policies = ofKind<NetworkPolicy>(resources, 'NetworkPolicy');
  const deployments = ofKind<Deployment>(resources, 'Deployment');
  const denyAll = policies.find((policy) => (policy.spec?.ingress ?? []).length === 0 && policy.spec?.policyTypes?.includes('Ingress'));
  if (!denyAll) problems.push('no default-deny ingress NetworkPolicy');
  for (const deployment of deployments) {
    if (denyAll && !selects(denyAll.spec?.podSelector?.matchLabels, podLabels(deployment))) problems.push(`NetworkPolicy ${nameOf(denyAll)} does not cover Deployment ${nameOf(deployment)}`);
    const own = policies.filter((policy) => policy !== denyAll && selects(policy.spec?.podSelector?.matchLabels, podLabels(deployment)));
    if (!own.some((policy) => (policy.spec?.ingress ?? []).length > 0)) problems.push(`Deployment ${nameOf(deployment)}: no NetworkPolicy admits its callers`);
    const container = deployment.spec?.template?.spec?.containers?.[0] ?? {};
    for (const policy of own) {
      for (const rule of policy.spec?.ingress ?? []) {
        const open = !rule.from || rule.from.length === 0 || rule.from.some((peer) => peer.ipBlock?.cidr === '0.0.0.0/0' || (peer.namespaceSelector && Object.keys(peer.namespaceSelector.matchLabels ?? {}).length === 0));
        if (open && nameOf(deployment) !== publicDeployment) problems.push(`NetworkPolicy ${nameOf(policy)}: admits any source to ${nameOf(deployment)}, which is not on the public path`);
        if (!rule.ports || rule.ports.length === 0) problems.push(`NetworkPolicy ${nameOf(policy)}: a rule admits every port`);
        for (const port of rule.ports ?? []) {
          if (containerPort(container, port.port) === undefined) problems.push(`NetworkPolicy ${nameOf(policy)}: port ${String(port.port)} is not a port of ${nameOf(deployment)}`);
        }
      }
    }
  }
  return problems;
}

export interface ResolvedEnv {
  env: Record<string, string>;
  problems: string[];
}

/** The container's environment as the kubelet would build it from these ConfigMap and Secret objects. */
export function resolveEnv(deployment: Deployment, container: Container, resources: LoadedManifest[], namespace: string): ResolvedEnv {
  const env: Record<string, string> = {};
  const problems: string[] = [];
  const where = `Deployment ${nameOf(deployment)}`;
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (from?.configMapKeyRef) {
      const configMap = find<Manifest & { data?: Record<string, string> }>(resources, 'ConfigMap', from.configMapKeyRef.name ?? '');
      const value = configMap?.data?.[from.configMapKeyRef.key ?? ''];
      if (value === undefined) problems.push(`${where}: ${variable.name} refers to missing ConfigMap key ${String(from.configMapKeyRef.name)}/${String(from.configMapKeyRef.key)}`);
      else env[variable.name] = value;
    } else if (from?.secretKeyRef) {
      const secret = find<Manifest & { stringData?: Record<string, string>; data?: Record<string, string> }>(resources, 'Secret', from.secretKeyRef.name ?? '');
      const key = from.secretKeyRef.key ?? '';
      const value = secret?.stringData?.[key] ?? (secret?.data?.[key] !== undefined ? Buffer.from(secret.data[key], 'base64').toString('utf8') : undefined);
      if (value === undefined) problems.push(`${where}: ${variable.name} refers to missing Secret key ${String(from.secretKeyRef.name)}/${key}`);
      else env[variable.name] = value;
    } else if (from?.fieldRef?.fieldPath === 'metadata.namespace') env[variable.name] = namespace;
    else if (from?.fieldRef?.fieldPath === 'metadata.name') env[variable.name] = `${nameOf(deployment)}-7d4b9c6f5d-x2x9k`;
    else problems.push(`${where}: ${variable.name} has no value this check understands`);
  }
  return { env, problems };
}

/** The cloud metadata service: credentials of the node's cloud identity, never for a pod here. */
export const METADATA_ADDRESS = '169.254.169.254/32';

/**
 * Egress is denied by default too (SPEC 10.1, least privilege): the default
 * deny names Egress; one policy lets every pod reach the cluster DNS and
 * nothing else; each Deployment has its own egress rules, each bound to
 * ports, none open to the whole internet without excepting the metadata
 * address, and only `kubeApiDeployments` may reach the Kubernetes API ports.
 */
export function checkEgressPolicies(resources: LoadedManifest[], kubeApiDeployments: string[]): string[] {
  const problems: string[] = [];
  const policies = ofKind<NetworkPolicy>(resources, 'NetworkPolicy');
  const deployments = ofKind<Deployment>(resources, 'Deployment');
  const denyAll = policies.find((policy) => (policy.spec?.ingress ?? []).length === 0 && (policy.spec?.egress ?? []).length === 0 && policy.spec?.policyTypes?.includes('Ingress'));
  if (!denyAll?.spec?.policyTypes?.includes('Egress')) problems.push('the default-deny NetworkPolicy does not deny Egress');
  const dns = policies.filter((policy) => policy !== denyAll && (policy.spec?.ingress ?? []).length === 0 && (policy.spec?.egress ?? []).some((rule) => (rule.ports ?? []).some((port) => port.port === 53)));
  if (dns.length === 0) problems.push('no NetworkPolicy lets pods reach DNS (port 53)');
  for (const policy of dns) {
    for (const rule of policy.spec?.egress ?? []) {
      if ((rule.ports ?? []).some((port) => port.port !== 53)) problems.push(`NetworkPolicy ${nameOf(policy)}: the DNS policy admits more than port 53`);
      if ((rule.to ?? []).length === 0 || (rule.to ?? []).some((peer) => peer.ipBlock)) problems.push(`NetworkPolicy ${nameOf(policy)}: DNS must go to the cluster DNS pods only`);
    }
  }
  for (const deployment of deployments) {
    const name = nameOf(deployment);
    if (denyAll && !selects(denyAll.spec?.podSelector?.matchLabels, podLabels(deployment))) problems.push(`NetworkPolicy ${nameOf(denyAll)} does not deny egress of Deployment ${name}`);
    if (!dns.some((policy) => selects(policy.spec?.podSelector?.matchLabels, podLabels(deployment)))) problems.push(`Deployment ${name}: no DNS egress`);
    const own = policies.filter((policy) => policy !== denyAll && !dns.includes(policy) && selects(policy.spec?.podSelector?.matchLabels, podLabels(deployment)));
    const rules = own.flatMap((policy) => (policy.spec?.egress ?? []).map((rule) => ({ policy: nameOf(policy), rule })));
    if (!own.some((policy) => policy.spec?.policyTypes?.includes('Egress')) || rules.length === 0) problems.push(`Deployment ${name}: no NetworkPolicy of its own names its egress`);
    for (const { policy, rule } of rules) {
      if (!rule.ports || rule.ports.length === 0) problems.push(`NetworkPolicy ${policy}: an egress rule admits every port`);
      if (!rule.to || rule.to.length === 0) problems.push(`NetworkPolicy ${policy}: an egress rule admits every destination`);
      for (const peer of rule.to ?? []) {
        if (peer.ipBlock && !peer.ipBlock.except?.includes(METADATA_ADDRESS)) problems.push(`NetworkPolicy ${policy}: ipBlock ${String(peer.ipBlock.cidr)} does not except the metadata address ${METADATA_ADDRESS}`);
        if (peer.namespaceSelector && Object.keys(peer.namespaceSelector.matchLabels ?? {}).length === 0) problems.push(`NetworkPolicy ${policy}: an egress rule admits every namespace`);
      }
      const kubeApi = (rule.ports ?? []).some((port) => port.port === 443 || port.port === 6443) && (rule.to ?? []).some((peer) => peer.ipBlock);
      if (kubeApi && !kubeApiDeployments.includes(name)) problems.push(`NetworkPolicy ${policy}: ${name} may reach the Kubernetes API, which it does not use`);
    }
  }
  return problems;
}

import { LoadedManifest, loadKustomization } from './kustomize';
import {
  Autoscaler,
  Deployment,
  NetworkPolicy,
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
  resolveEnv,
} from './manifest-checks';
import { readmeVariables, repoPath, undocumentedVariables } from './repository';

/**
 * The checks must catch what they claim to: each case breaks one thing in a
 * copy of the real base and expects the matching complaint.
 */
const base = loadKustomization(repoPath('k8s', 'base')).resources;

function copy(): LoadedManifest[] {
  return structuredClone(base);
}

function deploymentIn(resources: LoadedManifest[], name: string): Deployment {
  const found = find<Deployment>(resources, 'Deployment', name);
  if (!found) throw new Error(`no Deployment ${name}`);
  return found;
}

const AUTH_DELEGATOR = new Map([['allocation-api', ['system:auth-delegator']]]);
const LEAST_PRIVILEGE = new Map<string, PolicyRule[]>([
  [
    'pod-watcher',
    [
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['smart-router-pod-watcher'], verbs: ['get', 'update'] },
    ],
  ],
  [
    'reconciler',
    [
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      // HEARTBEAT_DEAD_ACTION=delete (SPEC 11).
      { apiGroups: [''], resources: ['pods'], verbs: ['delete'] },
      { apiGroups: ['apps'], resources: ['statefulsets/scale'], resourceNames: ['voice-agent', 'voice-agent-v2'], verbs: ['get', 'patch'] },
    ],
  ],
]);

describe('manifest checks', () => {
  it('pass on the real base', () => {
    const resources = copy();
    expect(checkAppDeployment('allocation-api', 8080, deploymentIn(resources, 'allocation-api'))).toEqual([]);
    expect(checkRbac(resources, 'voice-system', LEAST_PRIVILEGE, AUTH_DELEGATOR)).toEqual([]);
    expect(checkNetworkPolicies(resources, 'nginx-router')).toEqual([]);
  });

  it.each([
    ['a rollout that may drop capacity', (deployment: Deployment) => (deployment.spec!.strategy!.rollingUpdate!.maxUnavailable = 1), /maxUnavailable 0/],
    ['a missing readiness probe', (deployment: Deployment) => delete deployment.spec!.template!.spec!.containers![0].readinessProbe, /no HTTP readinessProbe/],
    ['readiness on the liveness path', (deployment: Deployment) => (deployment.spec!.template!.spec!.containers![0].readinessProbe!.httpGet!.path = '/health'), /readinessProbe probes \/health, expected \/ready/],
    ['a probe on an undeclared port', (deployment: Deployment) => (deployment.spec!.template!.spec!.containers![0].livenessProbe!.httpGet!.port = 9999), /livenessProbe port 9999 is not a container port/],
    ['no preStop hook', (deployment: Deployment) => delete deployment.spec!.template!.spec!.containers![0].lifecycle, /no preStop hook/],
    ['a grace period shorter than 30 s', (deployment: Deployment) => (deployment.spec!.template!.spec!.terminationGracePeriodSeconds = 10), /terminationGracePeriodSeconds must be set to at least 30/],
    ['no memory limit', (deployment: Deployment) => delete deployment.spec!.template!.spec!.containers![0].resources!.limits!.memory, /resources\.limits\.memory missing/],
    ['a latest tag', (deployment: Deployment) => (deployment.spec!.template!.spec!.containers![0].image = 'smart-router/allocation-api:latest'), /pinned tag/],
    ['a loopback bind address', (deployment: Deployment) => (deployment.spec!.template!.spec!.containers![0].env!.find((variable) => variable.name === 'HOST')!.value = '127.0.0.1'), /HOST should be "0\.0\.0\.0"/],
    ['the wrong port', (deployment: Deployment) => (deployment.spec!.template!.spec!.containers![0].ports![0].containerPort = 9090), /container port "http" should be 8080/],
    ['a root-capable pod', (deployment: Deployment) => delete deployment.spec!.template!.spec!.securityContext!.runAsNonRoot, /runAsNonRoot/],
  ])('catch %s', (_reason, breakIt, complaint) => {
    const deployment = deploymentIn(copy(), 'allocation-api');
    breakIt(deployment);
    expect(checkAppDeployment('allocation-api', 8080, deployment).join('\n')).toMatch(complaint);
  });

  it('catch a grace period too short for preStop plus shutdown', () => {
    const deployment = deploymentIn(copy(), 'admin');
    deployment.spec!.template!.spec!.containers![0].lifecycle = { preStop: { exec: { command: ['sleep', '25'] } } };
    expect(checkDeploymentBasics(deployment).join('\n')).toMatch(/< preStop 25 s \+ 10 s/);
  });

  it('catch a Deployment without a Service or PodDisruptionBudget', () => {
    const resources = copy().filter(({ manifest }) => !(manifest.metadata?.name === 'admin' && (manifest.kind === 'Service' || manifest.kind === 'PodDisruptionBudget')));
    const problems = checkServiceAndBudget(deploymentIn(resources, 'admin'), resources).join('\n');
    expect(problems).toMatch(/no Service selects its pods/);
    expect(problems).toMatch(/0 PodDisruptionBudgets/);
  });

  it('catch an autoscaler fighting the Deployment or pointing nowhere', () => {
    const resources = copy();
    const autoscaler = find<Autoscaler>(resources, 'HorizontalPodAutoscaler', 'webhooks')!;
    deploymentIn(resources, 'webhooks').spec!.replicas = 3;
    autoscaler.spec!.minReplicas = 1;
    expect(checkAutoscaler(autoscaler, resources).join('\n')).toMatch(/sets replicas[\s\S]*minReplicas 1 < 2/);
    autoscaler.spec!.scaleTargetRef!.name = 'web-hooks';
    expect(checkAutoscaler(autoscaler, resources).join('\n')).toMatch(/is not a Deployment here/);
  });

  it('catch any RBAC grant beyond the least-privilege set', () => {
    const widened = copy();
    find<{ rules?: PolicyRule[] } & LoadedManifest['manifest']>(widened, 'Role', 'reconciler')!.rules!.push({ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] });
    expect(checkRbac(widened, 'voice-system', LEAST_PRIVILEGE).join('\n')).toMatch(/ServiceAccount reconciler: rules/);

    const bound = copy();
    bound.push({ file: 'k8s/base/rolebinding-admin.yaml', manifest: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'admin' }, roleRef: { kind: 'Role', name: 'reconciler' }, subjects: [{ kind: 'ServiceAccount', name: 'admin', namespace: 'voice-system' }] } });
    expect(checkRbac(bound, 'voice-system', LEAST_PRIVILEGE).join('\n')).toMatch(/ServiceAccount admin is granted 3 rules but needs no Kubernetes API access/);

    const clusterWide = copy();
    clusterWide.push({ file: 'k8s/base/clusterrole-x.yaml', manifest: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'x' } } });
    expect(checkRbac(clusterWide, 'voice-system', LEAST_PRIVILEGE, AUTH_DELEGATOR).join('\n')).toMatch(/ClusterRole x: no cluster-wide role of our own/);

    const clusterAdmin = copy();
    const binding = (name: string, role: string, account: string) => ({ file: `k8s/base/clusterrolebinding-${name}.yaml`, manifest: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role }, subjects: [{ kind: 'ServiceAccount', name: account, namespace: 'voice-system' }] } });
    clusterAdmin.push(binding('oops', 'cluster-admin', 'allocation-api'));
    expect(checkRbac(clusterAdmin, 'voice-system', LEAST_PRIVILEGE, AUTH_DELEGATOR).join('\n')).toMatch(/ServiceAccount allocation-api must not be bound to ClusterRole cluster-admin/);
    const delegating = copy();
    delegating.push(binding('admin-delegator', 'system:auth-delegator', 'admin'));
    expect(checkRbac(delegating, 'voice-system', LEAST_PRIVILEGE, AUTH_DELEGATOR).join('\n')).toMatch(/ServiceAccount admin must not be bound to ClusterRole system:auth-delegator/);
    const unbound = copy().filter((resource) => resource.manifest.kind !== 'ClusterRoleBinding');
    expect(checkRbac(unbound, 'voice-system', LEAST_PRIVILEGE, AUTH_DELEGATOR).join('\n')).toMatch(/ServiceAccount allocation-api is not bound to ClusterRole system:auth-delegator/);
  });

  it('catch an admin API open to any source, and a missing default deny', () => {
    const open = copy();
    const admin = find<NetworkPolicy>(open, 'NetworkPolicy', 'admin')!;
    admin.spec!.ingress![0].from = [];
    expect(checkNetworkPolicies(open, 'nginx-router').join('\n')).toMatch(/admits any source to admin/);

    const undenied = copy().filter(({ manifest }) => manifest.metadata?.name !== 'smart-router-default-deny');
    expect(checkNetworkPolicies(undenied, 'nginx-router').join('\n')).toMatch(/no default-deny/);
  });

  it('catch egress left open: no default deny, no DNS, an app without egress rules, the metadata address, the Kube API for an app that never calls it', () => {
    const KUBE_API = ['allocation-api', 'pod-watcher', 'reconciler'];
    expect(checkEgressPolicies(copy(), KUBE_API)).toEqual([]);

    const ingressOnly = copy();
    find<NetworkPolicy>(ingressOnly, 'NetworkPolicy', 'smart-router-default-deny')!.spec!.policyTypes = ['Ingress'];
    expect(checkEgressPolicies(ingressOnly, KUBE_API).join('\n')).toMatch(/does not deny Egress/);

    const noDns = copy().filter(({ manifest }) => manifest.metadata?.name !== 'smart-router-allow-dns');
    expect(checkEgressPolicies(noDns, KUBE_API).join('\n')).toMatch(/no NetworkPolicy lets pods reach DNS/);

    const silent = copy();
    delete find<NetworkPolicy>(silent, 'NetworkPolicy', 'webhooks')!.spec!.egress;
    expect(checkEgressPolicies(silent, KUBE_API).join('\n')).toMatch(/Deployment webhooks: no NetworkPolicy of its own names its egress/);

    const metadata = copy();
    find<NetworkPolicy>(metadata, 'NetworkPolicy', 'admin')!.spec!.egress![0].to = [{ ipBlock: { cidr: '0.0.0.0/0' } }];
    expect(checkEgressPolicies(metadata, KUBE_API).join('\n')).toMatch(/admin: ipBlock 0\.0\.0\.0\/0 does not except the metadata address/);

    const anyPort = copy();
    delete find<NetworkPolicy>(anyPort, 'NetworkPolicy', 'nginx-router')!.spec!.egress![0].ports;
    expect(checkEgressPolicies(anyPort, KUBE_API).join('\n')).toMatch(/nginx-router: an egress rule admits every port/);

    expect(checkEgressPolicies(copy(), ['pod-watcher', 'reconciler']).join('\n')).toMatch(/allocation-api may reach the Kubernetes API/);
  });

  it('catch unknown kinds, wrong apiVersions and misnamed files', () => {
    expect(checkResource({ file: 'k8s/base/ingress-x.yaml', manifest: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'x' } } }).join('\n')).toMatch(/kind is not one/);
    const hpa = structuredClone(base.find(({ manifest }) => manifest.kind === 'HorizontalPodAutoscaler')!);
    hpa.manifest.apiVersion = 'autoscaling/v1';
    hpa.file = 'k8s/base/hpa-allocation-api.yaml';
    const problems = checkResource(hpa).join('\n');
    expect(problems).toMatch(/apiVersion autoscaling\/v1, expected autoscaling\/v2/);
    expect(problems).toMatch(/horizontalpodautoscaler-<name>\.yaml/);
  });

  it('catch environment references to keys that do not exist, and undocumented variables', () => {
    const resources = copy().filter(({ manifest }) => manifest.kind !== 'Secret');
    const deployment = deploymentIn(resources, 'allocation-api');
    const problems = resolveEnv(deployment, deployment.spec!.template!.spec!.containers![0], resources, 'voice-system').problems.join('\n');
    expect(problems).toMatch(/REDIS_URL refers to missing Secret key smart-router-secrets\/REDIS_URL/);

    expect(undocumentedVariables('allocation-api', ['REDIS_URL', 'SMART_ROUTER_RETRY_ATTEMPTS', 'ADMIN_OPERATOR_TOKENS'])).toEqual([
      'allocation-api: SMART_ROUTER_RETRY_ATTEMPTS is not in README.md\'s configuration table',
      'allocation-api: SMART_ROUTER_RETRY_ATTEMPTS is set but its config reader never reads it',
      'allocation-api: ADMIN_OPERATOR_TOKENS is documented for admin only',
      'allocation-api: ADMIN_OPERATOR_TOKENS is set but its config reader never reads it',
    ]);
    expect(readmeVariables('| `X_Y` | admin, `npm start` | `1` | meaning |\n| not | a | row |').get('X_Y')).toEqual({ name: 'X_Y', apps: ['admin', 'npm start'], defaultValue: '`1`' });
  });
});

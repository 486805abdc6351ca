import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ExtraRoutes, SimApiServer } from './api-server';
import { ClusterState, ClusterTimings, DEFAULT_TIMINGS, READY_ANNOTATION, SimLease, SimPod } from './cluster';
import { AGENT_TOKEN_AUDIENCE } from './pod-tokens';

export interface SimClusterOptions {
  port?: number;
  host?: string;
  namespace?: string;
  /** The voice-agent StatefulSet's name (its pods are `{name}-{ordinal}`) and `app` label. */
  statefulSet?: string;
  replicas?: number;
  /** Write a kubeconfig pointing at this server (current context's namespace = ours). */
  kubeconfigPath?: string;
  timings?: Partial<ClusterTimings>;
  /** Pod events kept for watches to resume from; older resourceVersions get 410. */
  historyLimit?: number;
  /** The first resourceVersion (default 1); earlier ones get 410. */
  firstResourceVersion?: number;
  /**
   * Keep the Leases in this file across restarts of the simulated cluster, as
   * etcd keeps them across API-server restarts: a leader's term (the Lease's
   * leaseTransitions, which fences pod events in Redis) must never go back.
   */
  leaseFile?: string;
}

/**
 * A simulated Kubernetes cluster in one process: the API server plus the
 * controllers that matter to the router. Tests drive it through the REST API
 * (as the apps do) or through these methods; faults are injected here.
 */
export class SimCluster {
  private constructor(
    readonly state: ClusterState,
    private readonly api: SimApiServer,
    readonly url: string,
    readonly namespace: string,
    readonly statefulSetName: string,
  ) {}

  static async start(options: SimClusterOptions = {}): Promise<SimCluster> {
    const namespace = options.namespace ?? 'voice-system';
    const name = options.statefulSet ?? 'voice-agent';
    const host = options.host ?? '127.0.0.1';
    const state = new ClusterState(namespace, { ...DEFAULT_TIMINGS, ...options.timings }, options.historyLimit);
    if (options.firstResourceVersion !== undefined) state.startRevisionsAt(options.firstResourceVersion);
    if (options.leaseFile) keepLeases(state, options.leaseFile);
    const api = new SimApiServer(state);
    const port = await api.listen(options.port ?? 0, host);
    const cluster = new SimCluster(state, api, `http://${host}:${port}`, namespace, name);
    state.createStatefulSet(name, options.replicas ?? 5, { app: name });
    if (options.kubeconfigPath) writeKubeconfig(options.kubeconfigPath, cluster.url, namespace);
    return cluster;
  }

  /** Serves more routes on the API's port (the simulated carrier, SPEC 11: every `/sim/…` endpoint is here). */
  serve(routes: ExtraRoutes): void {
    this.api.serve(routes);
  }

  async stop(): Promise<void> {
    this.state.dispose();
    await this.api.close();
  }

  getPod(name: string): SimPod | undefined {
    return this.state.getPod(name);
  }

  /**
   * Fault injection for TokenReview (SPEC 10.1): answer reviews `delayMs` late (0 = at once;
   * a review the client cancels first is never answered) and/or fail them with HTTP `failure`.
   */
  tokenReviewFaults(faults: { delayMs?: number; failure?: number | null }): void {
    if (faults.delayMs !== undefined) this.api.tokenReviewDelayMs = faults.delayMs;
    if (faults.failure !== undefined) this.api.tokenReviewFailure = faults.failure;
  }

  /** Fault injection: every request on StatefulSet `name` (its scale too) answers 403 Forbidden while `forbidden`. */
  forbidStatefulSet(name: string, forbidden = true): void {
    if (forbidden) this.api.forbiddenStatefulSets.add(name);
    else this.api.forbiddenStatefulSets.delete(name);
  }

  /** TokenReview requests open at the API server now, and the most at once since start. */
  get tokenReviewLoad(): { inFlight: number; maxInFlight: number } {
    return { inFlight: this.api.tokenReviewsInFlight, maxInFlight: this.api.maxTokenReviewsInFlight };
  }

  /** Serve `POST /sim/agents/{pod}/freeze|thaw|crash` (SPEC 11) for these voice agents. */
  attachAgents(agents: { fault(pod: string, action: 'freeze' | 'thaw' | 'crash'): unknown }): void {
    this.api.agents = agents;
  }

  listPods(): SimPod[] {
    return this.state.listPods(this.namespace);
  }

  isReady(name: string): boolean {
    return this.getPod(name)?.status.conditions.some((condition) => condition.type === 'Ready' && condition.status === 'True') ?? false;
  }

  /** A pod outside the StatefulSet (`kubectl run`), matching the voice-agent selector unless labelled otherwise. */
  createBarePod(name: string, labels: Record<string, string> = { app: this.statefulSetName }): SimPod {
    return this.state.createBarePod(name, labels);
  }

  /** Graceful delete; the StatefulSet recreates the pod with a new UID. */
  deletePod(name: string, gracePeriodMs?: number): SimPod {
    return this.state.deletePod(name, gracePeriodMs);
  }

  setReady(name: string, ready: boolean): SimPod {
    return this.state.patchPod(name, (pod) => ({ ...pod, metadata: { ...pod.metadata, annotations: { ...pod.metadata.annotations, [READY_ANNOTATION]: String(ready) } } }));
  }

  setLabels(name: string, labels: Record<string, string>): SimPod {
    return this.state.patchPod(name, (pod) => ({ ...pod, metadata: { ...pod.metadata, labels: { ...pod.metadata.labels, ...labels } } }));
  }

  scale(replicas: number): void {
    this.state.scale(this.statefulSetName, replicas);
  }

  /** `kubectl rollout restart statefulset/voice-agent`: every pod replaced, one at a time. */
  rolloutRestart(): void {
    const set = this.state.getStatefulSet(this.statefulSetName)!;
    this.state.updateTemplateAnnotations(this.statefulSetName, { ...set.spec.template.metadata.annotations, 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() });
  }

  /**
   * A projected ServiceAccount token of `pod` (TokenRequest bound to the pod's
   * current UID), as the kubelet mounts it for the voice agent (SPEC 10.1).
   */
  podToken(pod: string, options: { audience?: string; serviceAccount?: string; namespace?: string; podUid?: string } = {}): string {
    if (options.namespace !== undefined && options.namespace !== this.state.namespace) {
      // A same-named pod of another namespace (the sim does not model it: its UID is given or made up).
      const foreign = { name: pod, uid: options.podUid ?? randomUUID() };
      return this.state.requestForeignPodToken(options.namespace, options.serviceAccount ?? this.statefulSetName, foreign, [options.audience ?? AGENT_TOKEN_AUDIENCE]);
    }
    const uid = this.getPod(pod)?.metadata.uid;
    return this.state.requestToken(options.serviceAccount ?? this.statefulSetName, {
      audiences: [options.audience ?? AGENT_TOKEN_AUDIENCE],
      boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod, uid },
    }).token;
  }

  /** Fault: end every open watch now. */
  dropWatches(): number {
    return this.api.dropWatches();
  }

  /** Fault: forget event history, so resumed watches get 410 Gone and must relist. */
  expireHistory(): void {
    this.state.expireHistory();
  }

  /** Fault: open watches hang silently (connected, nothing delivered). */
  stallWatches(): number {
    return this.api.stallWatches();
  }

  get openWatches(): number {
    return this.api.openWatches;
  }
}

/** A kubeconfig for kubectl and client-node: plain HTTP on loopback, a dummy token. */
export function writeKubeconfig(path: string, server: string, namespace: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const lines = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: smart-router-sim',
    '  cluster:',
    `    server: ${server}`,
    // client-node refuses plain HTTP unless TLS verification is explicitly off.
    '    insecure-skip-tls-verify: true',
    'users:',
    '- name: smart-router-sim',
    '  user:',
    '    token: simulated',
    'contexts:',
    '- name: smart-router-sim',
    '  context:',
    '    cluster: smart-router-sim',
    '    user: smart-router-sim',
    `    namespace: ${namespace}`,
    'current-context: smart-router-sim',
    '',
  ];
  writeFileSync(path, lines.join('\n'));
}

/** Restores the Leases from `path` (if it exists) and rewrites it on every Lease change. */
function keepLeases(state: ClusterState, path: string): void {
  if (existsSync(path)) state.restoreLeases(JSON.parse(readFileSync(path, 'utf8')) as SimLease[]);
  mkdirSync(dirname(path), { recursive: true });
  state.on('lease', () => {
    // Written whole then renamed: a crash mid-write leaves the previous file, never half of one.
    writeFileSync(`${path}.tmp`, JSON.stringify(state.listLeases()));
    renameSync(`${path}.tmp`, path);
  });
}

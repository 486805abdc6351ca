import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';

/** Most ServiceAccount tokens the simulated API keeps at once (TokenRequest is open here). */
export const MAX_SIM_TOKENS = 10_000;

/** Pod annotation that flips the simulated Ready condition (SPEC section 8). */
export const READY_ANNOTATION = 'sim.smart-router.io/ready';

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller: boolean }>;
  [key: string]: unknown;
}

export interface SimPod {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: ObjectMeta;
  spec: Record<string, unknown>;
  status: { phase: string; podIP: string; conditions: Array<{ type: string; status: 'True' | 'False'; lastTransitionTime: string }>; [key: string]: unknown };
}

export interface SimStatefulSet {
  apiVersion: 'apps/v1';
  kind: 'StatefulSet';
  metadata: ObjectMeta;
  spec: { replicas: number; serviceName: string; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: Record<string, unknown> } };
  status: { replicas: number; readyReplicas: number };
}

export interface SimLease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: ObjectMeta;
  spec: Record<string, unknown>;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface PodEvent {
  type: WatchEventType;
  object: SimPod;
  resourceVersion: number;
}

export interface ClusterTimings {
  /** New pod -> Ready (unless the ready annotation says "false"). */
  readyDelayMs: number;
  /** DELETE -> gone, when the request asks for no grace period of its own. */
  terminationDelayMs: number;
  /** Gone -> the StatefulSet controller creates the replacement. */
  recreateDelayMs: number;
}

/** The audience of a token requested without one: the API server itself. */
export const API_SERVER_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';

/** A ServiceAccount token minted by TokenRequest (authentication.k8s.io/v1). */
interface SimToken {
  namespace: string;
  serviceAccount: string;
  audiences: string[];
  /** The pod it is bound to (boundObjectRef), or null for an unbound token; `foreign`: a pod of a namespace the sim does not model. */
  pod: { name: string; uid: string; foreign?: boolean } | null;
  expiresAt: number;
}

export interface TokenRequestSpec {
  audiences?: string[];
  expirationSeconds?: number;
  boundObjectRef?: { kind?: string; apiVersion?: string; name?: string; uid?: string };
}

export interface TokenReviewStatus {
  authenticated: boolean;
  user?: { username: string; uid: string; groups: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

const SERVICE_ACCOUNT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export const DEFAULT_TIMINGS: ClusterTimings = { readyDelayMs: 400, terminationDelayMs: 200, recreateDelayMs: 100 };

export class ApiStatusError extends Error {
  constructor(readonly code: number, readonly reason: string, message: string) {
    super(message);
  }
}

/**
 * The cluster's state machine: one namespace's voice-agent StatefulSet and
 * its pods, plus Leases, with one resourceVersion counter for everything
 * (like etcd) and a bounded history of pod events for watches to resume from.
 * Everything a real control plane would do later (termination, the
 * StatefulSet controller's recreation, kubelet readiness) runs on timers.
 */
export class ClusterState extends EventEmitter {
  private revision = 1;
  private readonly pods = new Map<string, SimPod>();
  private readonly leases = new Map<string, SimLease>();
  private readonly statefulSets = new Map<string, SimStatefulSet>();
  private readonly history: PodEvent[] = [];
  /** Watches from a resourceVersion below this get 410 Gone. */
  private historyFloor = 1;
  private readonly timers = new Set<NodeJS.Timeout>();
  /** UIDs of pods whose containers have started (past the ready delay). */
  private readonly started = new Set<string>();
  /** ServiceAccount tokens by value (the sim is its own issuer: a token is valid iff it is here). */
  private readonly tokens = new Map<string, SimToken>();
  /** TokenReviews answered so far (tests count what reaches the API: a flood of garbage tokens must not). */
  tokenReviews = 0;

  constructor(
    readonly namespace: string,
    private readonly timings: ClusterTimings,
    private readonly historyLimit = 1000,
  ) {
    super();
    this.setMaxListeners(0);
  }

  get resourceVersion(): string {
    return String(this.revision);
  }

  /**
   * Numbers this state's changes from `revision` on, and answers 410 to a watch
   * from any earlier one. A restarted simulated cluster (its process died) starts
   * above every resourceVersion its predecessor handed out, so a client resuming
   * an old watch relists instead of missing the new pods (call before any change).
   */
  startRevisionsAt(revision: number): void {
    this.revision = revision;
    this.historyFloor = revision;
  }

  private nextRevision(): string {
    this.revision += 1;
    return String(this.revision);
  }

  private later(delayMs: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      action();
    }, delayMs);
    this.timers.add(timer);
  }

  dispose(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  // ---- pods -------------------------------------------------------------

  listPods(namespace?: string): SimPod[] {
    // Sorted by name, as the API server (etcd key order) returns them.
    return [...this.pods.values()]
      .filter((pod) => !namespace || pod.metadata.namespace === namespace)
      .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0))
      .map((pod) => structuredClone(pod));
  }

  getPod(name: string): SimPod | undefined {
    const pod = this.pods.get(name);
    return pod ? structuredClone(pod) : undefined;
  }

  private record(type: WatchEventType, pod: SimPod): void {
    const event: PodEvent = { type, object: structuredClone(pod), resourceVersion: Number(pod.metadata.resourceVersion) };
    this.history.push(event);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift()!;
      this.historyFloor = dropped.resourceVersion;
    }
    this.emit('pod', event);
  }

  /** Pod events after `resourceVersion`, or null when that point is no longer in history (410). */
  podEventsSince(resourceVersion: number): PodEvent[] | null {
    if (resourceVersion < this.historyFloor) return null;
    return this.history.filter((event) => event.resourceVersion > resourceVersion);
  }

  /** Fault injection: forget the event history, so any resumed watch gets 410 Gone. */
  expireHistory(): void {
    this.history.length = 0;
    this.historyFloor = this.revision + 1;
    this.nextRevision();
  }

  private createPod(set: SimStatefulSet, ordinal: number): void {
    const name = `${set.metadata.name}-${ordinal}`;
    const now = new Date().toISOString();
    const pod: SimPod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: this.namespace,
        uid: randomUUID(),
        resourceVersion: this.nextRevision(),
        creationTimestamp: now,
        labels: { ...set.spec.template.metadata.labels, 'statefulset.kubernetes.io/pod-name': name, 'apps.kubernetes.io/pod-index': String(ordinal) },
        annotations: { ...(set.spec.template.metadata.annotations ?? {}) },
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: set.metadata.name, uid: set.metadata.uid, controller: true }],
      },
      spec: { ...structuredClone(set.spec.template.spec), hostname: name, subdomain: set.spec.serviceName },
      status: { phase: 'Running', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: now }] },
    };
    this.admit(pod);
  }

  /** A new pod: listed and watched at once, Ready after the ready delay unless replaced meanwhile. */
  private admit(pod: SimPod): void {
    const name = pod.metadata.name;
    this.pods.set(name, pod);
    this.record('ADDED', pod);
    const uid = pod.metadata.uid;
    this.later(this.timings.readyDelayMs, () => {
      const current = this.pods.get(name);
      if (current?.metadata.uid !== uid) return;
      this.started.add(uid);
      this.refreshReady(current);
    });
  }

  /**
   * A pod no controller owns, as `kubectl run NAME --labels=app=voice-agent` makes:
   * Ready after the ready delay, never recreated once deleted. Lets tests give a
   * pod a name no StatefulSet ordinal produces (e.g. `metadata`).
   */
  createBarePod(name: string, labels: Record<string, string>): SimPod {
    if (this.pods.has(name)) throw new ApiStatusError(409, 'AlreadyExists', `pods "${name}" already exists`);
    const now = new Date().toISOString();
    const pod: SimPod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: this.namespace, uid: randomUUID(), resourceVersion: this.nextRevision(), creationTimestamp: now, labels: { ...labels }, annotations: {} },
      spec: { containers: [{ name: 'voice-agent', image: 'smart-router/sim-voice-agent:local', ports: [{ containerPort: 8000, name: 'ws' }] }] },
      status: { phase: 'Running', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: now }] },
    };
    this.admit(pod);
    return structuredClone(pod);
  }

  /** Ready = running, not terminating and not annotated `ready: "false"`. */
  private refreshReady(pod: SimPod): void {
    const wanted = this.started.has(pod.metadata.uid) && !pod.metadata.deletionTimestamp && pod.metadata.annotations?.[READY_ANNOTATION] !== 'false' ? 'True' : 'False';
    const condition = pod.status.conditions.find((entry) => entry.type === 'Ready')!;
    if (condition.status === wanted) return;
    condition.status = wanted;
    condition.lastTransitionTime = new Date().toISOString();
    pod.metadata.resourceVersion = this.nextRevision();
    this.record('MODIFIED', pod);
  }

  /** Starts graceful deletion: terminating now, gone after the grace period, then recreated. */
  deletePod(name: string, gracePeriodMs = this.timings.terminationDelayMs): SimPod {
    const pod = this.pods.get(name);
    if (!pod) throw new ApiStatusError(404, 'NotFound', `pods "${name}" not found`);
    if (!pod.metadata.deletionTimestamp) {
      pod.metadata.deletionTimestamp = new Date().toISOString();
      pod.metadata.deletionGracePeriodSeconds = Math.ceil(gracePeriodMs / 1000);
      pod.status.conditions.find((entry) => entry.type === 'Ready')!.status = 'False';
      pod.metadata.resourceVersion = this.nextRevision();
      this.record('MODIFIED', pod);
      const uid = pod.metadata.uid;
      this.later(gracePeriodMs, () => this.finishDeletion(name, uid));
    }
    return structuredClone(pod);
  }

  private finishDeletion(name: string, uid: string): void {
    const pod = this.pods.get(name);
    if (!pod || pod.metadata.uid !== uid) return;
    this.pods.delete(name);
    this.started.delete(uid);
    pod.metadata.resourceVersion = this.nextRevision();
    this.record('DELETED', pod);
    this.later(this.timings.recreateDelayMs, () => this.reconcileStatefulSets());
  }

  patchPod(name: string, mutate: (pod: SimPod) => SimPod): SimPod {
    const pod = this.pods.get(name);
    if (!pod) throw new ApiStatusError(404, 'NotFound', `pods "${name}" not found`);
    const next = mutate(structuredClone(pod));
    // Identity and status are the server's; a patch may change labels and annotations.
    pod.metadata.labels = { ...(next.metadata?.labels ?? {}) };
    pod.metadata.annotations = { ...(next.metadata?.annotations ?? {}) };
    pod.metadata.resourceVersion = this.nextRevision();
    this.record('MODIFIED', pod);
    this.refreshReady(pod);
    return structuredClone(this.pods.get(name)!);
  }

  // ---- statefulsets ------------------------------------------------------

  /**
   * A StatefulSet whose selector and template labels are `labels`, or (a
   * manifest's, SPEC 12: `kubectl apply` of a second version) `template`'s
   * labels under `selector`. Its pods are `{name}-{ordinal}` with the template's labels.
   */
  createStatefulSet(name: string, replicas: number, labels: Record<string, string>, template: { labels?: Record<string, string>; selector?: Record<string, string>; annotations?: Record<string, string> } = {}): SimStatefulSet {
    if (this.statefulSets.has(name)) throw new ApiStatusError(409, 'AlreadyExists', `statefulsets.apps "${name}" already exists`);
    const templateLabels = template.labels ?? labels;
    const selector = template.selector ?? labels;
    const set: SimStatefulSet = {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name, namespace: this.namespace, uid: randomUUID(), resourceVersion: this.nextRevision(), creationTimestamp: new Date().toISOString(), labels: { ...labels } },
      spec: {
        replicas,
        serviceName: name,
        selector: { matchLabels: { ...selector } },
        template: { metadata: { labels: { ...templateLabels }, ...(template.annotations ? { annotations: { ...template.annotations } } : {}) }, spec: { containers: [{ name: 'voice-agent', image: 'smart-router/sim-voice-agent:local', ports: [{ containerPort: 8000, name: 'ws' }] }] } },
      },
      status: { replicas: 0, readyReplicas: 0 },
    };
    this.statefulSets.set(name, set);
    this.reconcileStatefulSets();
    return this.getStatefulSet(name)!;
  }

  /**
   * Deletes a StatefulSet and (background cascade) its pods, each through the
   * pod's graceful termination as a scale-down would.
   */
  deleteStatefulSet(name: string): SimStatefulSet {
    const set = this.statefulSets.get(name);
    if (!set) throw new ApiStatusError(404, 'NotFound', `statefulsets.apps "${name}" not found`);
    const gone = this.getStatefulSet(name)!;
    this.statefulSets.delete(name);
    for (const pod of [...this.pods.values()]) {
      if (pod.metadata.ownerReferences?.[0]?.uid === set.metadata.uid && !pod.metadata.deletionTimestamp) this.deletePod(pod.metadata.name);
    }
    return gone;
  }

  getStatefulSet(name: string): SimStatefulSet | undefined {
    const set = this.statefulSets.get(name);
    if (!set) return undefined;
    const owned = [...this.pods.values()].filter((pod) => pod.metadata.ownerReferences?.[0]?.uid === set.metadata.uid);
    set.status = { replicas: owned.length, readyReplicas: owned.filter((pod) => pod.status.conditions.some((entry) => entry.type === 'Ready' && entry.status === 'True')).length };
    return structuredClone(set);
  }

  listStatefulSets(): SimStatefulSet[] {
    return [...this.statefulSets.keys()].map((name) => this.getStatefulSet(name)!);
  }

  scale(name: string, replicas: number): SimStatefulSet {
    const set = this.statefulSets.get(name);
    if (!set) throw new ApiStatusError(404, 'NotFound', `statefulsets.apps "${name}" not found`);
    if (!Number.isInteger(replicas) || replicas < 0) throw new ApiStatusError(422, 'Invalid', 'spec.replicas must be a non-negative integer');
    if (set.spec.replicas !== replicas) {
      set.spec.replicas = replicas;
      set.metadata.resourceVersion = this.nextRevision();
    }
    this.reconcileStatefulSets();
    return this.getStatefulSet(name)!;
  }

  /**
   * `kubectl rollout restart`: a changed pod-template annotation replaces every
   * pod, highest ordinal first, one at a time, each only after the previous
   * replacement is Ready (the StatefulSet RollingUpdate strategy).
   */
  updateTemplateAnnotations(name: string, annotations: Record<string, string>): SimStatefulSet {
    const set = this.statefulSets.get(name);
    if (!set) throw new ApiStatusError(404, 'NotFound', `statefulsets.apps "${name}" not found`);
    if (JSON.stringify(set.spec.template.metadata.annotations ?? {}) !== JSON.stringify(annotations)) {
      set.spec.template.metadata.annotations = { ...annotations };
      set.metadata.resourceVersion = this.nextRevision();
      this.rollOut(set, set.spec.replicas - 1, set.metadata.resourceVersion);
    }
    return this.getStatefulSet(name)!;
  }

  private rollOut(set: SimStatefulSet, ordinal: number, revision: string): void {
    // A newer template change started its own walk; this one stops.
    if (ordinal < 0 || set.metadata.resourceVersion !== revision) return;
    const name = `${set.metadata.name}-${ordinal}`;
    const old = this.pods.get(name);
    if (!old) return this.rollOut(set, ordinal - 1, revision);
    this.deletePod(name);
    const waitForReplacement = () => {
      const current = this.pods.get(name);
      const replaced = current && current.metadata.uid !== old.metadata.uid && current.status.conditions.some((entry) => entry.type === 'Ready' && entry.status === 'True');
      if (replaced || ordinal >= set.spec.replicas) this.rollOut(set, ordinal - 1, revision);
      else this.later(25, waitForReplacement);
    };
    this.later(25, waitForReplacement);
  }

  /** The StatefulSet controller: create missing ordinals, delete those above `replicas`. */
  private reconcileStatefulSets(): void {
    for (const set of this.statefulSets.values()) {
      for (let ordinal = 0; ordinal < set.spec.replicas; ordinal += 1) {
        if (!this.pods.has(`${set.metadata.name}-${ordinal}`)) this.createPod(set, ordinal);
      }
      for (const pod of [...this.pods.values()]) {
        const ordinal = Number(pod.metadata.labels?.['apps.kubernetes.io/pod-index']);
        if (pod.metadata.ownerReferences?.[0]?.uid === set.metadata.uid && ordinal >= set.spec.replicas && !pod.metadata.deletionTimestamp) {
          this.deletePod(pod.metadata.name);
        }
      }
    }
  }

  // ---- ServiceAccount tokens (TokenRequest / TokenReview) ------------------

  /**
   * TokenRequest: a token for `serviceAccount`, for `audiences` (default: the
   * API server), optionally bound to a pod. A pod-bound token dies with its
   * pod: once that pod is gone, or replaced by one with a new UID, reviews
   * say not authenticated (a terminating pod's token still works, as on a
   * real cluster, so its agent can release its calls).
   */
  requestToken(serviceAccount: string, spec: TokenRequestSpec = {}): { token: string; expirationTimestamp: string; audiences: string[] } {
    return this.mintToken(this.namespace, serviceAccount, spec);
  }

  /**
   * A token as the API server would mint it for a pod of ANOTHER namespace of the same cluster
   * (which the sim does not model, so the pod is taken as given and stays alive): the attack of
   * a same-named pod elsewhere (SPEC 10.1). Its review names that namespace and that pod's UID.
   */
  requestForeignPodToken(namespace: string, serviceAccount: string, pod: { name: string; uid: string }, audiences: string[]): string {
    if (namespace === this.namespace) throw new Error('requestForeignPodToken is for another namespace than the simulated one');
    return this.mintToken(namespace, serviceAccount, { audiences }, { ...pod, foreign: true }).token;
  }

  private mintToken(namespace: string, serviceAccount: string, spec: TokenRequestSpec, foreignPod?: SimToken['pod']): { token: string; expirationTimestamp: string; audiences: string[] } {
    if (!SERVICE_ACCOUNT_NAME.test(serviceAccount)) throw new ApiStatusError(422, 'Invalid', `serviceaccounts "${serviceAccount}" is not a valid name`);
    const seconds = spec.expirationSeconds ?? 3600;
    if (!Number.isInteger(seconds) || seconds < 600) throw new ApiStatusError(422, 'Invalid', 'spec.expirationSeconds: may not specify a duration less than 10 minutes');
    const audiences = spec.audiences && spec.audiences.length > 0 ? [...spec.audiences] : [API_SERVER_AUDIENCE];
    let pod: SimToken['pod'] = foreignPod ?? null;
    const ref = spec.boundObjectRef;
    if (ref) {
      if (ref.kind !== 'Pod') throw new ApiStatusError(422, 'Invalid', `spec.boundObjectRef.kind: Unsupported value: "${String(ref.kind)}": supported values: "Pod"`);
      const bound = ref.name ? this.pods.get(ref.name) : undefined;
      if (!bound) throw new ApiStatusError(404, 'NotFound', `pods "${String(ref.name)}" not found`);
      if (ref.uid && ref.uid !== bound.metadata.uid) throw new ApiStatusError(409, 'Conflict', `the UID in the bound object reference (${ref.uid}) does not match the UID in record. The object might have been deleted and then recreated`);
      pod = { name: bound.metadata.name, uid: bound.metadata.uid };
    }
    this.forgetDeadTokens();
    // JWT-shaped like a real projected token (header.claims.signature, base64url): the router reviews nothing else.
    const segment = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const token = [segment({ alg: 'RS256', kid: 'sim' }), segment({ iss: 'sim', sub: `system:serviceaccount:${namespace}:${serviceAccount}`, aud: audiences }), randomBytes(32).toString('base64url')].join('.');
    const expiresAt = Date.now() + Math.min(seconds, 48 * 3600) * 1000;
    // Bounded: anyone may ask (the sim checks no credential), so the oldest token goes first beyond the cap.
    if (this.tokens.size >= MAX_SIM_TOKENS) this.tokens.delete(this.tokens.keys().next().value as string);
    this.tokens.set(token, { namespace, serviceAccount, audiences, pod, expiresAt });
    return { token, expirationTimestamp: new Date(expiresAt).toISOString(), audiences };
  }

  /** TokenReview: who `token` is, for one of `audiences` (default: the API server). */
  reviewToken(token: string, audiences: string[] = []): TokenReviewStatus {
    this.tokenReviews += 1;
    const wanted = audiences.length > 0 ? audiences : [API_SERVER_AUDIENCE];
    const found = this.tokens.get(token);
    if (!found || found.expiresAt <= Date.now()) return { authenticated: false, error: 'invalid bearer token, token lookup failed' };
    const current = found.pod ? this.pods.get(found.pod.name) : undefined;
    if (found.pod && !found.pod.foreign && current?.metadata.uid !== found.pod.uid) {
      return { authenticated: false, error: `invalid bearer token, pod "${found.pod.name}" with UID ${found.pod.uid} no longer exists` };
    }
    const matched = wanted.filter((audience) => found.audiences.includes(audience));
    if (matched.length === 0) return { authenticated: false, error: 'invalid bearer token, token audiences is invalid for the target audiences' };
    const extra: Record<string, string[]> = found.pod
      ? { 'authentication.kubernetes.io/pod-name': [found.pod.name], 'authentication.kubernetes.io/pod-uid': [found.pod.uid] }
      : {};
    return {
      authenticated: true,
      user: {
        username: `system:serviceaccount:${found.namespace}:${found.serviceAccount}`,
        uid: `sim-serviceaccount-${found.serviceAccount}`,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${found.namespace}`, 'system:authenticated'],
        extra,
      },
      audiences: matched,
    };
  }

  /** Tokens that can never authenticate again (expired, or their pod gone) are dropped: memory stays bounded by live pods. */
  private forgetDeadTokens(): void {
    const now = Date.now();
    for (const [token, entry] of this.tokens) {
      if (entry.expiresAt <= now || (entry.pod && !entry.pod.foreign && this.pods.get(entry.pod.name)?.metadata.uid !== entry.pod.uid)) this.tokens.delete(token);
    }
  }

  // ---- leases (optimistic concurrency on resourceVersion) -----------------

  getLease(name: string): SimLease {
    const lease = this.leases.get(name);
    if (!lease) throw new ApiStatusError(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`);
    return structuredClone(lease);
  }

  listLeases(): SimLease[] {
    return [...this.leases.values()].map((lease) => structuredClone(lease));
  }

  createLease(body: Partial<SimLease>): SimLease {
    const name = body.metadata?.name;
    if (!name) throw new ApiStatusError(422, 'Invalid', 'metadata.name: Required value');
    if (this.leases.has(name)) throw new ApiStatusError(409, 'AlreadyExists', `leases.coordination.k8s.io "${name}" already exists`);
    const lease: SimLease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { ...(body.metadata ?? {}), name, namespace: this.namespace, uid: randomUUID(), resourceVersion: this.nextRevision(), creationTimestamp: new Date().toISOString() },
      spec: { ...(body.spec ?? {}) },
    };
    this.leases.set(name, lease);
    this.emit('lease');
    return structuredClone(lease);
  }

  replaceLease(name: string, body: Partial<SimLease>): SimLease {
    const current = this.leases.get(name);
    if (!current) throw new ApiStatusError(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`);
    const expected = body.metadata?.resourceVersion;
    if (expected && expected !== current.metadata.resourceVersion) {
      throw new ApiStatusError(409, 'Conflict', `Operation cannot be fulfilled on leases.coordination.k8s.io "${name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    const lease: SimLease = { ...current, metadata: { ...current.metadata, labels: body.metadata?.labels ?? current.metadata.labels, resourceVersion: this.nextRevision() }, spec: { ...(body.spec ?? {}) } };
    this.leases.set(name, lease);
    this.emit('lease');
    return structuredClone(lease);
  }

  deleteLease(name: string): SimLease {
    const lease = this.getLease(name);
    this.leases.delete(name);
    this.emit('lease');
    return lease;
  }

  /** Leases kept by a previous run of the simulated cluster (see SimClusterOptions.leaseFile). */
  restoreLeases(leases: SimLease[]): void {
    for (const lease of leases) if (lease?.metadata?.name) this.leases.set(lease.metadata.name, structuredClone(lease));
  }
}

import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { answerClientError, guardServer } from '@smart-router/http';
import { ApiStatusError, ClusterState, PodEvent, SimPod, SimStatefulSet, TokenRequestSpec } from './cluster';
import { parseFieldSelector, parseLabelSelector } from './label-selector';
import { applyPatch, PatchError } from './patch';

/** Serves a request and answers true, or answers false (not one of its paths). */
export type ExtraRoutes = (request: IncomingMessage, response: ServerResponse, url: URL) => Promise<boolean>;

interface OpenWatch {
  response: ServerResponse;
  /** A stalled watch stays open but delivers nothing (a hung connection). */
  stalled: boolean;
  close(): void;
}

const POD_RESOURCES = [
  { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['delete', 'get', 'list', 'patch', 'watch'], shortNames: ['po'] },
  { name: 'namespaces', singularName: 'namespace', namespaced: false, kind: 'Namespace', verbs: ['get', 'list'], shortNames: ['ns'] },
  { name: 'serviceaccounts/token', singularName: '', namespaced: true, group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest', verbs: ['create'] },
];
const APPS_RESOURCES = [
  { name: 'statefulsets', singularName: 'statefulset', namespaced: true, kind: 'StatefulSet', verbs: ['create', 'delete', 'get', 'list', 'patch'], shortNames: ['sts'] },
  { name: 'statefulsets/scale', singularName: '', namespaced: true, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] },
];
const AUTHENTICATION_RESOURCES = [{ name: 'tokenreviews', singularName: 'tokenreview', namespaced: false, kind: 'TokenReview', verbs: ['create'] }];
const LEASE_RESOURCES = [{ name: 'leases', singularName: 'lease', namespaced: true, kind: 'Lease', verbs: ['create', 'delete', 'get', 'list', 'update'] }];
const GROUPS = [
  { name: 'apps', version: 'v1' },
  { name: 'coordination.k8s.io', version: 'v1' },
  { name: 'authentication.k8s.io', version: 'v1' },
];

function status(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function list(kind: string, apiVersion: string, resourceVersion: string, items: unknown[]) {
  return { kind, apiVersion, metadata: { resourceVersion }, items };
}

function age(since: string): string {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  return `${Math.floor(seconds / 3600)}h`;
}

/** What `kubectl get pods` asks for (`Accept: …;as=Table;g=meta.k8s.io`): READY and STATUS columns. */
function podTable(resourceVersion: string, pods: SimPod[]) {
  const column = (name: string, format = '') => ({ name, type: 'string', format, description: name, priority: 0 });
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: [column('Name', 'name'), column('Ready'), column('Status'), column('Restarts'), column('Age')],
    rows: pods.map((pod) => {
      const ready = pod.status.conditions.some((condition) => condition.type === 'Ready' && condition.status === 'True');
      const { name, namespace, uid, resourceVersion: rv, creationTimestamp, labels } = pod.metadata;
      return {
        cells: [name, ready ? '1/1' : '0/1', pod.metadata.deletionTimestamp ? 'Terminating' : pod.status.phase, '0', age(creationTimestamp)],
        object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: { name, namespace, uid, resourceVersion: rv, creationTimestamp, labels } },
      };
    }),
  };
}

function wantsTable(request: IncomingMessage): boolean {
  return /as=Table/.test(request.headers.accept ?? '');
}

function group(name: string, version: string) {
  const groupVersion = `${name}/${version}`;
  return { name, versions: [{ groupVersion, version }], preferredVersion: { groupVersion, version } };
}

/**
 * The Kubernetes REST API over the simulated state, for exactly what the
 * router, kubectl and the tests use: discovery, pods (list, watch, get,
 * patch, delete), the StatefulSet and its scale subresource, Leases, and a
 * namespace. Watches stream newline-delimited events and answer a too-old
 * resourceVersion with an ERROR event carrying 410, as the real API does.
 */
export class SimApiServer {
  private server: Server | null = null;
  private readonly watches = new Set<OpenWatch>();
  requestCount = 0;
  /** Routes served beside the Kubernetes API (the simulated carrier's `/sim/carrier/…`, SPEC 11); each answers false when not its path. */
  private readonly extraRoutes: ExtraRoutes[] = [];

  /** The simulated voice agents, when this process runs them: `POST /sim/agents/{pod}/freeze|thaw|crash` (SPEC 11). */
  agents: { fault(pod: string, action: 'freeze' | 'thaw' | 'crash'): unknown; rehomed?: readonly unknown[]; rehomedCount?: number; staleReleases?: number } | null = null;

  /**
   * Fault injection (SPEC 10.1 load tests): a TokenReview is answered this many ms late (0 = at
   * once), or, when the client gives up first (closes its request), not at all.
   */
  tokenReviewDelayMs = 0;
  /** Fault injection: TokenReviews are answered with this HTTP status (a Status object) instead of a review. */
  tokenReviewFailure: number | null = null;
  /**
   * Fault injection: StatefulSets (by name) whose every request, the scale subresource included, is
   * answered 403 Forbidden, as for a StatefulSet outside the Role's resourceNames.
   */
  readonly forbiddenStatefulSets = new Set<string>();
  /** TokenReview requests open at this server now (arrived, not yet answered nor closed by the client), and the most ever. */
  tokenReviewsInFlight = 0;
  maxTokenReviewsInFlight = 0;

  constructor(private readonly state: ClusterState) {}

  serve(routes: ExtraRoutes): void {
    this.extraRoutes.push(routes);
  }

  async listen(port: number, host: string): Promise<number> {
    const server = createServer((request, response) => void this.handle(request, response));
    server.keepAliveTimeout = 5000;
    server.on('clientError', answerClientError);
    // Watches are long-lived streams: a client may reset one at any moment (SPEC 10.2).
    guardServer(server);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address();
    return typeof address === 'object' && address ? address.port : port;
  }

  async close(): Promise<void> {
    this.dropWatches();
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Fault injection: every open watch ends now (clients resume from their last resourceVersion). */
  dropWatches(): number {
    const open = [...this.watches];
    for (const watch of open) watch.close();
    return open.length;
  }

  /** Fault injection: every open watch hangs (stays connected, delivers nothing). */
  stallWatches(): number {
    for (const watch of this.watches) watch.stalled = true;
    return this.watches.size;
  }

  get openWatches(): number {
    return this.watches.size;
  }

  private send(response: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    response.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  }

  private async readBody(request: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      size += (chunk as Buffer).length;
      if (size > 1024 * 1024) throw new ApiStatusError(413, 'RequestEntityTooLarge', 'request body too large');
      chunks.push(chunk as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiStatusError(400, 'BadRequest', 'request body is not valid JSON');
    }
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    this.requestCount += 1;
    const url = new URL(request.url ?? '/', 'http://sim');
    try {
      for (const routes of this.extraRoutes) if (await routes(request, response, url)) return;
      const body = await this.route(request, response, url);
      if (body !== undefined) this.send(response, request.method === 'POST' ? 201 : 200, body);
    } catch (error) {
      if (error instanceof ApiStatusError) this.send(response, error.code, status(error.code, error.reason, error.message));
      else if (error instanceof PatchError) this.send(response, 422, status(422, 'Invalid', error.message));
      else this.send(response, 500, status(500, 'InternalError', (error as Error).message));
    }
  }

  private notFound(url: URL): never {
    throw new ApiStatusError(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
  }

  /** Returns the body to send, or undefined when the handler answered (watches). */
  private async route(request: IncomingMessage, response: ServerResponse, url: URL): Promise<unknown> {
    const method = request.method ?? 'GET';
    const path = url.pathname.replace(/\/+$/, '');
    const rv = this.state.resourceVersion;
    const ns = this.state.namespace;

    if (method === 'GET') {
      switch (path) {
        case '/version':
          return { major: '1', minor: '30', gitVersion: 'v1.30.0-smart-router-sim', platform: `${process.platform}/${process.arch}` };
        case '/healthz':
        case '/readyz':
        case '/livez':
          response.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
          return undefined;
        case '/api':
          return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: request.headers.host ?? '' }] };
        case '/api/v1':
          return { kind: 'APIResourceList', groupVersion: 'v1', resources: POD_RESOURCES };
        case '/apis':
          return { kind: 'APIGroupList', apiVersion: 'v1', groups: GROUPS.map(({ name, version }) => group(name, version)) };
        case '/apis/apps':
          return { kind: 'APIGroup', apiVersion: 'v1', ...group('apps', 'v1') };
        case '/apis/coordination.k8s.io':
          return { kind: 'APIGroup', apiVersion: 'v1', ...group('coordination.k8s.io', 'v1') };
        case '/apis/apps/v1':
          return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: 'apps/v1', resources: APPS_RESOURCES };
        case '/apis/coordination.k8s.io/v1':
          return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: 'coordination.k8s.io/v1', resources: LEASE_RESOURCES };
        case '/apis/authentication.k8s.io':
          return { kind: 'APIGroup', apiVersion: 'v1', ...group('authentication.k8s.io', 'v1') };
        case '/apis/authentication.k8s.io/v1':
          return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: 'authentication.k8s.io/v1', resources: AUTHENTICATION_RESOURCES };
        case '/api/v1/namespaces':
          return list('NamespaceList', 'v1', rv, [this.namespaceObject()]);
        case '/api/v1/pods':
          return this.pods(request, response, url, undefined);
        // Just enough OpenAPI v3 for `kubectl apply` (SPEC 12: a second StatefulSet): it tells
        // kubectl that PATCH of a StatefulSet takes `fieldValidation`, so kubectl leaves
        // validation to the server instead of downloading every schema.
        case '/openapi/v3':
          return { paths: { 'apis/apps/v1': { serverRelativeURL: '/openapi/v3/apis/apps/v1?hash=sim' } } };
        case '/openapi/v3/apis/apps/v1':
          return APPS_OPENAPI;
      }
    }

    // SPEC 11: the calls the agents received re-homed (with `rehome_from`), and late releases refused as stale.
    if (path === '/sim/agents/rehomed') {
      if (method !== 'GET') throw new ApiStatusError(405, 'MethodNotAllowed', `${method} is not supported on ${path}`);
      if (!this.agents) throw new ApiStatusError(404, 'NotFound', 'no simulated voice agents run in this process');
      response.writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ count: this.agents.rehomedCount ?? 0, stale_releases: this.agents.staleReleases ?? 0, calls: this.agents.rehomed ?? [] }));
      return undefined;
    }

    let match = /^\/sim\/agents\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/(freeze|thaw|crash)$/.exec(path);
    if (match) {
      if (method !== 'POST') throw new ApiStatusError(405, 'MethodNotAllowed', `${method} is not supported on ${path}`);
      if (!this.agents) throw new ApiStatusError(404, 'NotFound', 'no simulated voice agents run in this process');
      if (!this.state.getPod(match[1])) throw new ApiStatusError(404, 'NotFound', `pods "${match[1]}" not found`);
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(this.agents.fault(match[1], match[3] as 'freeze' | 'thaw' | 'crash')));
      return undefined;
    }

    match = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(path);
    if (match && method === 'GET') {
      if (match[1] !== ns) throw new ApiStatusError(404, 'NotFound', `namespaces "${match[1]}" not found`);
      return this.namespaceObject();
    }

    match = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+))?$/.exec(path);
    if (match) {
      const [, namespace, name] = match;
      if (!name) {
        if (method !== 'GET') throw new ApiStatusError(405, 'MethodNotAllowed', `${method} pods is not supported by the simulator`);
        return this.pods(request, response, url, namespace);
      }
      if (namespace !== ns) throw new ApiStatusError(404, 'NotFound', `pods "${name}" not found`);
      if (method === 'GET') return wantsTable(request) ? podTable(this.state.resourceVersion, [this.existingPod(name)]) : this.existingPod(name);
      if (method === 'DELETE') return this.deletePod(name, url, await this.readBody(request));
      if (method === 'PATCH') {
        const patch = await this.readBody(request);
        return this.state.patchPod(name, (pod) => applyPatch(request.headers['content-type'] ?? '', pod, patch) as SimPod);
      }
      throw new ApiStatusError(405, 'MethodNotAllowed', `${method} pod is not supported by the simulator`);
    }

    match = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/statefulsets(?:\/([^/]+)(\/scale)?)?$/.exec(path);
    if (match) {
      const [, namespace, name, scale] = match;
      if (!name && method === 'POST') {
        if (namespace !== ns) throw new ApiStatusError(404, 'NotFound', `namespaces "${namespace}" not found`);
        return this.createStatefulSet((await this.readBody(request)) as StatefulSetManifest);
      }
      if (!name) return list('StatefulSetList', 'apps/v1', rv, namespace === ns ? this.state.listStatefulSets() : []);
      if (name && this.forbiddenStatefulSets.has(name)) {
        throw new ApiStatusError(403, 'Forbidden', `statefulsets.apps${scale ? '/scale' : ''} "${name}" is forbidden (simulated fault)`);
      }
      if (method === 'DELETE' && !scale && namespace === ns) return this.state.deleteStatefulSet(name);
      const set = namespace === ns ? this.state.getStatefulSet(name) : undefined;
      if (!set) throw new ApiStatusError(404, 'NotFound', `statefulsets.apps "${name}" not found`);
      if (method === 'GET') return scale ? this.scaleObject(set) : set;
      if (method === 'PUT' || method === 'PATCH') {
        const body = await this.readBody(request);
        const current = scale ? this.scaleObject(set) : set;
        const next = (method === 'PUT' ? body : applyPatch(request.headers['content-type'] ?? '', current, body)) as {
          spec?: { replicas?: unknown; template?: { metadata?: { annotations?: Record<string, string> } } };
        };
        if (!scale && next.spec?.template?.metadata) this.state.updateTemplateAnnotations(name, next.spec.template.metadata.annotations ?? {});
        const updated = this.state.scale(name, Number(next.spec?.replicas ?? set.spec.replicas));
        return scale ? this.scaleObject(updated) : updated;
      }
      throw new ApiStatusError(405, 'MethodNotAllowed', `${method} statefulset is not supported by the simulator`);
    }

    // TokenRequest: a ServiceAccount token for an audience, bound to a pod (SPEC 10.1).
    match = /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts\/([^/]+)\/token$/.exec(path);
    if (match) {
      const [, namespace, serviceAccount] = match;
      if (method !== 'POST') throw new ApiStatusError(405, 'MethodNotAllowed', `${method} serviceaccounts/token is not supported`);
      if (namespace !== ns) throw new ApiStatusError(404, 'NotFound', `serviceaccounts "${serviceAccount}" not found`);
      const body = (await this.readBody(request)) as { spec?: TokenRequestSpec };
      const issued = this.state.requestToken(serviceAccount, body?.spec ?? {});
      return {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        metadata: { name: serviceAccount, namespace, creationTimestamp: new Date().toISOString() },
        spec: { ...(body?.spec ?? {}), audiences: issued.audiences },
        status: { token: issued.token, expirationTimestamp: issued.expirationTimestamp },
      };
    }

    // TokenReview: who a bearer token is, for the audiences asked (the token is not echoed back).
    if (path === '/apis/authentication.k8s.io/v1/tokenreviews') {
      if (method !== 'POST') throw new ApiStatusError(405, 'MethodNotAllowed', `${method} tokenreviews is not supported`);
      this.tokenReviewsInFlight += 1;
      this.maxTokenReviewsInFlight = Math.max(this.maxTokenReviewsInFlight, this.tokenReviewsInFlight);
      response.once('close', () => {
        this.tokenReviewsInFlight -= 1;
      });
      const body = (await this.readBody(request)) as { spec?: { token?: unknown; audiences?: unknown } };
      if (this.tokenReviewDelayMs > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.tokenReviewDelayMs);
          response.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
        });
        if (response.destroyed || response.writableEnded) return undefined;
      }
      if (this.tokenReviewFailure !== null) throw new ApiStatusError(this.tokenReviewFailure, 'InternalError', 'TokenReview failed (simulated fault)');
      const token = typeof body?.spec?.token === 'string' ? body.spec.token : '';
      const audiences = Array.isArray(body?.spec?.audiences) ? body.spec.audiences.filter((entry): entry is string => typeof entry === 'string') : [];
      return {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        metadata: { creationTimestamp: null },
        spec: { audiences },
        status: token ? this.state.reviewToken(token, audiences) : { authenticated: false, error: 'spec.token: Required value' },
      };
    }

    match = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/.exec(path);
    if (match) {
      const [, namespace, name] = match;
      if (namespace !== ns) throw new ApiStatusError(403, 'Forbidden', `the simulator only serves namespace ${ns}`);
      if (!name) {
        if (method === 'GET') return list('LeaseList', 'coordination.k8s.io/v1', rv, this.state.listLeases());
        if (method === 'POST') return this.state.createLease((await this.readBody(request)) as never);
      } else {
        if (method === 'GET') return this.state.getLease(name);
        if (method === 'PUT') return this.state.replaceLease(name, (await this.readBody(request)) as never);
        if (method === 'DELETE') return this.state.deleteLease(name);
      }
      throw new ApiStatusError(405, 'MethodNotAllowed', `${method} lease is not supported by the simulator`);
    }

    return this.notFound(url);
  }

  private namespaceObject() {
    return { apiVersion: 'v1', kind: 'Namespace', metadata: { name: this.state.namespace, uid: 'sim-namespace', resourceVersion: '1' }, status: { phase: 'Active' } };
  }

  private existingPod(name: string): SimPod {
    const pod = this.state.getPod(name);
    if (!pod) throw new ApiStatusError(404, 'NotFound', `pods "${name}" not found`);
    return pod;
  }

  /**
   * POST of a StatefulSet manifest (SPEC 12: a second agent version next to
   * the first, e.g. `kubectl apply -f k8s/examples/voice-agent-v2.yaml`): its
   * name, replicas, selector and template labels (and annotations) are kept;
   * the container spec is the simulator's own voice agent.
   */
  private createStatefulSet(manifest: StatefulSetManifest): SimStatefulSet {
    const name = manifest?.metadata?.name;
    if (typeof name !== 'string' || !/^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$/.test(name)) {
      throw new ApiStatusError(422, 'Invalid', 'metadata.name: Invalid value: must be a DNS-1123 label of at most 52 characters');
    }
    const replicas = manifest.spec?.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 0) throw new ApiStatusError(422, 'Invalid', 'spec.replicas: Invalid value: must be a non-negative integer');
    const selector = manifest.spec?.selector?.matchLabels ?? {};
    const labels = manifest.spec?.template?.metadata?.labels ?? {};
    if (Object.keys(selector).length === 0 || Object.entries(selector).some(([key, value]) => labels[key] !== value)) {
      throw new ApiStatusError(422, 'Invalid', 'spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`');
    }
    return this.state.createStatefulSet(name, replicas, manifest.metadata?.labels ?? {}, { labels, selector, annotations: manifest.spec?.template?.metadata?.annotations });
  }

  private deletePod(name: string, url: URL, body: unknown): SimPod {
    // DeleteOptions.preconditions.uid, as the real API server: delete only that incarnation (409 otherwise).
    const uid = (body as { preconditions?: { uid?: string } })?.preconditions?.uid;
    const current = this.state.getPod(name);
    if (uid && current && current.metadata.uid !== uid) {
      throw new ApiStatusError(409, 'Conflict', `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${current.metadata.uid}`);
    }
    const fromBody = (body as { gracePeriodSeconds?: number })?.gracePeriodSeconds;
    const fromQuery = url.searchParams.get('gracePeriodSeconds');
    const seconds = fromQuery !== null ? Number(fromQuery) : fromBody;
    return this.state.deletePod(name, seconds === undefined || Number.isNaN(seconds) ? undefined : seconds * 1000);
  }

  private scaleObject(set: SimStatefulSet) {
    return {
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: { name: set.metadata.name, namespace: set.metadata.namespace, uid: set.metadata.uid, resourceVersion: set.metadata.resourceVersion, creationTimestamp: set.metadata.creationTimestamp },
      spec: { replicas: set.spec.replicas },
      status: { replicas: set.status.replicas, selector: Object.entries(set.spec.selector.matchLabels).map(([key, value]) => `${key}=${value}`).join(',') },
    };
  }

  private pods(request: IncomingMessage, response: ServerResponse, url: URL, namespace: string | undefined): unknown {
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
    const matches = (pod: SimPod) => (!namespace || pod.metadata.namespace === namespace) && labels(pod.metadata.labels ?? {}) && fields(pod);
    const watch = url.searchParams.get('watch');
    if (watch === 'true' || watch === '1') {
      this.watch(request, response, url, matches);
      return undefined;
    }
    const pods = this.state.listPods(namespace).filter(matches);
    return wantsTable(request) ? podTable(this.state.resourceVersion, pods) : list('PodList', 'v1', this.state.resourceVersion, pods);
  }

  private watch(request: IncomingMessage, response: ServerResponse, url: URL, matches: (pod: SimPod) => boolean): void {
    response.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' });
    // Clients consider the watch established once headers arrive, which may be long before the first event.
    response.flushHeaders();
    const table = wantsTable(request);
    const write = (type: string, object: unknown) => {
      const shown = table && (object as { kind?: string }).kind === 'Pod' ? podTable(this.state.resourceVersion, [object as SimPod]) : object;
      response.write(`${JSON.stringify({ type, object: shown })}\n`);
    };
    const from = url.searchParams.get('resourceVersion');
    if (from && from !== '0') {
      const missed = this.state.podEventsSince(Number(from));
      if (missed === null) {
        write('ERROR', status(410, 'Expired', `too old resource version: ${from} (${this.state.resourceVersion})`));
        response.end();
        return;
      }
      for (const event of missed) if (matches(event.object)) write(event.type, event.object);
    } else {
      for (const pod of this.state.listPods().filter(matches)) write('ADDED', pod);
    }

    let timeout: NodeJS.Timeout | null = null;
    const onEvent = (event: PodEvent) => {
      if (!entry.stalled && matches(event.object)) write(event.type, event.object);
    };
    const entry: OpenWatch = {
      response,
      stalled: false,
      close: () => {
        if (!this.watches.delete(entry)) return;
        this.state.off('pod', onEvent);
        if (timeout) clearTimeout(timeout);
        response.end();
      },
    };
    this.watches.add(entry);
    this.state.on('pod', onEvent);
    request.on('close', () => entry.close());
    const seconds = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    if (seconds > 0) timeout = setTimeout(() => entry.close(), seconds * 1000);
  }
}

/** The fields of a POSTed StatefulSet the simulator uses. */
interface StatefulSetManifest {
  metadata?: { name?: unknown; labels?: Record<string, string> };
  spec?: {
    replicas?: number;
    selector?: { matchLabels?: Record<string, string> };
    template?: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> } };
  };
}

/** The OpenAPI v3 document of apps/v1 as far as kubectl's query-parameter check reads it. */
const APPS_OPENAPI = {
  openapi: '3.0.0',
  info: { title: 'Kubernetes (smart-router simulator)', version: 'v1.30.0' },
  paths: {
    '/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}': {
      patch: {
        'x-kubernetes-group-version-kind': { group: 'apps', version: 'v1', kind: 'StatefulSet' },
        parameters: [{ name: 'fieldValidation', in: 'query', schema: { type: 'string' } }],
      },
    },
  },
};

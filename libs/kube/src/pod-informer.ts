import { CoreV1Api, KubeConfig, V1Pod, makeInformer } from '@kubernetes/client-node';
import { PodSnapshot, podSnapshot } from './pod-snapshot';

export interface PodChange {
  type: 'upsert' | 'deleted';
  pod: PodSnapshot;
}

export interface PodInformerOptions {
  namespace: string;
  labelSelector: string;
  onChange(change: PodChange): void;
  onSynced?(): void;
  onError?(error: unknown): void;
  /** Backoff before restarting after an error (the library does not restart itself). */
  restartDelayMs?: number;
}

/**
 * List + watch of the voice-agent pods through client-node's informer, made
 * to survive: the informer relists by itself on 410 Gone, but stops on any
 * other error, so we start it again. It is the SAME informer every time
 * (across errors and across lost and regained leadership): its cache is what
 * lets a relist report the pods deleted while we were not watching, which a
 * fresh informer (empty cache) would silently miss. It keys pods by name; a
 * StatefulSet pod that came back with a new UID is reported as an upsert
 * carrying the new UID, and the reconciler treats the UID change as "old pod
 * gone".
 */
export class PodInformer {
  private readonly informer: ReturnType<typeof makeInformer<V1Pod>>;
  private restartTimer: NodeJS.Timeout | null = null;
  private running = false;
  synced = false;

  constructor(config: KubeConfig, private readonly options: PodInformerOptions) {
    const { namespace, labelSelector } = options;
    const api = config.makeApiClient(CoreV1Api);
    this.informer = makeInformer<V1Pod>(config, `/api/v1/namespaces/${namespace}/pods`, () => api.listNamespacedPod({ namespace, labelSelector }), labelSelector);
    const emit = (type: PodChange['type']) => (pod: V1Pod) => {
      if (!this.running) return;
      const snapshot = podSnapshot(pod);
      if (snapshot) this.options.onChange({ type, pod: snapshot });
    };
    this.informer.on('add', emit('upsert'));
    this.informer.on('update', emit('upsert'));
    this.informer.on('delete', emit('deleted'));
    this.informer.on('connect', () => {
      if (!this.running) return;
      this.synced = true;
      this.options.onSynced?.();
    });
    this.informer.on('error', (error) => {
      if (!this.running) return;
      this.synced = false;
      this.options.onError?.(error);
      this.scheduleRestart();
    });
  }

  async start(): Promise<void> {
    this.running = true;
    await this.launch();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.synced = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    await this.informer.stop().catch(() => undefined);
  }

  private async launch(): Promise<void> {
    try {
      await this.informer.start();
    } catch (error) {
      this.options.onError?.(error);
      this.scheduleRestart();
    }
  }

  private scheduleRestart(): void {
    if (!this.running || this.restartTimer) return;
    void this.informer.stop().catch(() => undefined);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.running) void this.launch();
    }, this.options.restartDelayMs ?? 500);
  }
}

/** One fresh LIST (the reconciler's source of truth; informer resyncs do not relist). */
export async function listPods(config: KubeConfig, namespace: string, labelSelector: string): Promise<PodSnapshot[]> {
  const api = config.makeApiClient(CoreV1Api);
  const list = await api.listNamespacedPod({ namespace, labelSelector });
  return list.items.map(podSnapshot).filter((pod): pod is PodSnapshot => pod !== null);
}

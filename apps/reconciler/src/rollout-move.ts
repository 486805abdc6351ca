import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { AppsV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { LoggerService } from '@nestjs/common';
import { parseStoredRollout } from '@smart-router/allocation';
import { RedisKeys } from '@smart-router/redis-keys';
import { FleetScripts, RolloutScripts } from '@smart-router/redis-scripts';
import { errorLine } from './fleet.service';

/**
 * rollout:move as promote and rollback write it (setRollout-6.lua, in the
 * same step as their revision); `cover` is set by the first step, `seen_at`
 * is the last step that saw a pod of the version (the move's deadline).
 */
export interface RolloutMove {
  version: string;
  revision: number;
  at: number;
  cover?: number;
  seen_at?: number;
}

/** ROLLOUT_MOVE_DEADLINE_SECONDS' default: a move whose version has had no pod for 10 minutes is abandoned. */
export const DEFAULT_MOVE_DEADLINE_MS = 600_000;

export interface MoveReport {
  /** retrying: a Kubernetes read or patch failed this step (logged); the next tick tries again, the deadlines still apply. */
  state: 'none' | 'abandoned' | 'waiting' | 'moving' | 'done' | 'retrying';
  /** Per StatefulSet: observed replicas and the target of the move. */
  sets?: Record<string, { replicas: number; target: number }>;
}

/** A Kubernetes read or patch of one StatefulSet that failed (not a 404): the step is retried next tick. */
class KubernetesStepError extends Error {
  constructor(readonly statefulSet: string, readonly failure: unknown) {
    super(`${statefulSet}: ${errorLine(failure)}`);
  }
}

/** A StatefulSet pod's name is `{sts}-{ordinal}`. */
const POD_NAME = /^(.+)-(\d+)$/;

/**
 * Moves replicas after a promote or rollback (SPEC 12), call-safely: the
 * promoted version's StatefulSet is planned up to `cover` (the fleet's size
 * when the move began: the sum of every agent StatefulSet's planned target),
 * every other agent StatefulSet to 0 through the SPEC 9.1 plan (planFleet /
 * stepFleet: its pods leave their pools at once, their calls go on, and
 * spec.replicas is lowered only once none holds a call). The primary
 * StatefulSet (VOICE_AGENT_STATEFULSET) keeps its plan under fleet:plan and
 * is stepped by FleetService.tick; any other one has its own plan keys
 * (fleet:plan:{sts}) and is stepped here, under the same fleet lock.
 *
 * Which StatefulSet a version's pods belong to: decided from pod names
 * `{sts}-{ordinal}` (Kubernetes names a StatefulSet's pods so; the pod
 * records the watcher sends carry labels, not owner references), learned
 * every step from version:pods:{version} and kept in rollout:statefulsets, so
 * a version scaled to 0 can be scaled back (a rollback after a promote).
 * A version never seen with a pod cannot be scaled up: the move waits, but
 * not forever (admin refuses to promote a version with no pod and no known
 * StatefulSet, 409 UNKNOWN_VERSION; and a version may lose its pods or never
 * get Ready ones): once the version has had no pod known to the router for
 * `deadlineMs` (ROLLOUT_MOVE_DEADLINE_SECONDS, counted from the move's start
 * or the last step that saw one), the move is abandoned where it stands with
 * a rollout.move_abandoned event, and the autoscaler, paused while a move
 * exists, resumes. The move ends when every set reached its target; a later
 * split replaces or deletes the move in its own step (setRollout-6.lua).
 * Every write of the move (cover, seen_at, done, abandoned) is
 * compare-and-set on its revision (settleRolloutMove-2.lua): a step that read
 * an older move never overwrites nor deletes a newer promote's.
 */
export class RolloutMover {
  private readonly apps: AppsV1Api;
  private readonly token = `move-${process.pid}-${randomUUID()}`;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    kube: KubeConfig,
    private readonly namespace: string,
    private readonly primary: string,
    private readonly primaryScripts: FleetScripts,
    private readonly scriptsOf: (statefulSet: string) => FleetScripts,
    private readonly lockTtlMs: number,
    private readonly logger: LoggerService,
    private readonly rollouts: RolloutScripts,
    private readonly deadlineMs = DEFAULT_MOVE_DEADLINE_MS,
  ) {
    this.apps = kube.makeApiClient(AppsV1Api);
  }

  async tick(now = Date.now()): Promise<MoveReport> {
    const k = this.keys;
    const raw = await this.redis.get(k.rolloutMove());
    await this.learn();
    if (!raw) return { state: 'none' };
    const move = JSON.parse(raw) as RolloutMove;
    const live = parseStoredRollout(await this.redis.get(k.rollout()));
    if (!live || live.revision !== move.revision) {
      // setRollout replaces the move with its revision, so only a lost live document leaves one behind.
      await this.rollouts.settleMove(move.revision, 'abandon', {}, 'its revision is no longer live', now);
      return { state: 'abandoned' };
    }
    // Pods of the version that serve (Ready, not terminating): a pod stuck Pending, pulling or
    // crash-looping is no pod for the move.
    const ready = await this.readyPods(move.version);
    const hasPods = ready > 0;
    if (hasPods) {
      // Seen now: written at most once a second (a step runs every second or two).
      if (now - (move.seen_at ?? 0) >= 1000 && (await this.rollouts.settleMove(move.revision, 'update', { seen_at: now }, '', now))) move.seen_at = now;
    } else if (now - (move.seen_at ?? move.at) > this.deadlineMs) {
      return this.abandon(move, `version ${JSON.stringify(move.version)} had no Ready pod for ${Math.round(this.deadlineMs / 1000)} s`, now);
    }
    // A version that never gets enough Ready pods (a crash loop, no room in the cluster) would
    // hold the old version's pods and the autoscaler's pause for ever: past the deadline from
    // the move's start, the move is abandoned where it stands (nothing is drained further).
    // Both deadlines are checked before any Kubernetes read, so a StatefulSet the API keeps
    // refusing (403, timeouts) cannot keep a move, and the autoscaler's pause, for ever; a cover
    // not known yet (the first step never got through) counts as not reached.
    if (now - move.at > this.deadlineMs && (move.cover === undefined || ready < move.cover)) {
      const seconds = Math.round(this.deadlineMs / 1000);
      return this.abandon(move, move.cover === undefined
        ? `version ${JSON.stringify(move.version)} had ${ready} pods Ready and the move's first step had not completed after ${seconds} s`
        : `version ${JSON.stringify(move.version)} had ${ready} of ${move.cover} pods Ready after ${seconds} s`, now);
    }
    try {
      return await this.step(move, ready, now);
    } catch (error) {
      if (!(error instanceof KubernetesStepError)) throw error;
      this.logger.warn(`rollout move of revision ${move.revision}: ${error.message}; retried next tick`, 'Rollout');
      return { state: 'retrying' };
    }
  }

  /** One step of a live move within its deadlines: learn the sizes, set `cover` once, drive each StatefulSet. */
  private async step(move: RolloutMove, ready: number, now: number): Promise<MoveReport> {
    const k = this.keys;
    const map = await this.redis.hgetall(k.versionStatefulSets());
    const promoted = map[move.version];
    if (!promoted) {
      this.logger.warn(`rollout move: no StatefulSet known for version ${JSON.stringify(move.version)} (none of its pods seen yet)`, 'Rollout');
      return { state: 'waiting' };
    }
    const sets = [...new Set([promoted, ...Object.values(map)])];
    const replicas: Record<string, number> = {};
    const planned: Record<string, number> = {};
    const promotedReplicas = await this.readReplicas(promoted);
    if (promotedReplicas === null) {
      // Its StatefulSet was deleted since its pods were seen: nothing to scale up (the deadline abandons the move).
      this.logger.warn(`rollout move: StatefulSet ${promoted} of version ${JSON.stringify(move.version)} does not exist`, 'Rollout');
      return { state: 'waiting' };
    }
    for (const sts of sets) {
      replicas[sts] = sts === promoted ? promotedReplicas : ((await this.readReplicas(sts)) ?? 0);
      const target = await this.redis.hget(this.scripts(sts).planKey(), 'target');
      planned[sts] = target === null ? replicas[sts] : Number(target);
    }
    if (move.cover === undefined) {
      move.cover = Math.max(1, sets.reduce((sum, sts) => sum + planned[sts], 0));
      // A newer promote or rollback replaced the move meanwhile: its own step sizes it.
      if (!(await this.rollouts.settleMove(move.revision, 'update', { cover: move.cover }, '', now))) return { state: 'abandoned' };
    }
    const report: NonNullable<MoveReport['sets']> = {};
    let done = true;
    // The others are lowered only as far as the version has Ready pods to take their place:
    // together they keep `cover` minus those, so capacity never dips while the version's new
    // pods start (a rollback right after a promote would otherwise drain every pod of both
    // versions at once: 503 NO_POD_AVAILABLE until the new pods are Ready). A move that never
    // gets a Ready pod (abandoned at its deadline) leaves the fleet serving as it was.
    let keep = Math.max(0, move.cover - ready);
    for (const sts of sets) {
      let target = sts === promoted ? Math.max(move.cover, planned[sts] ?? 0) : 0;
      if (sts !== promoted) {
        target = Math.min(keep, Math.max(replicas[sts], planned[sts]));
        keep -= target;
      }
      report[sts] = { replicas: replicas[sts], target };
      if (sts !== promoted && target > 0) done = false;
      if (!(await this.drive(sts, replicas[sts], planned[sts], target, `rollout: revision ${move.revision} moves replicas to version ${JSON.stringify(move.version)}`, now))) done = false;
    }
    if (done) {
      await this.rollouts.settleMove(move.revision, 'done', {}, '', now);
      this.logger.log(`rollout move to version ${JSON.stringify(move.version)} done`, 'Rollout');
      return { state: 'done', sets: report };
    }
    return { state: 'moving', sets: report };
  }

  private async abandon(move: RolloutMove, reason: string, now: number): Promise<MoveReport> {
    if (await this.rollouts.settleMove(move.revision, 'abandon', {}, reason, now)) {
      this.logger.warn(`rollout move of revision ${move.revision} abandoned: ${reason}; the autoscaler resumes`, 'Rollout');
    }
    return { state: 'abandoned' };
  }

  private scripts(sts: string): FleetScripts {
    return sts === this.primary ? this.primaryScripts : this.scriptsOf(sts);
  }

  /** Plans `target` and, for a StatefulSet other than the primary, steps and patches it. True once it holds `target` replicas. */
  private async drive(sts: string, observed: number, planned: number, target: number, reason: string, now: number): Promise<boolean> {
    const scripts = this.scripts(sts);
    if (sts === this.primary) {
      // FleetService.tick steps the primary's plan (it observed the size already).
      if (planned !== target) await scripts.plan(target, reason, now);
      return observed === target && (await this.redis.hget(scripts.planKey(), 'committing')) === null;
    }
    let step = await scripts.step(observed, this.token, this.lockTtlMs, now);
    if (step.action === 'locked') return false;
    try {
      if (step.target !== target) {
        await scripts.plan(target, reason, now);
        step = await scripts.step(observed, this.token, this.lockTtlMs, now);
      }
      if (step.action === 'scale_up' || step.action === 'scale_down') {
        await this.apps.patchNamespacedStatefulSetScale(
          { name: sts, namespace: this.namespace, body: { spec: { replicas: step.target } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ).catch((error: unknown) => {
          throw new KubernetesStepError(sts, error);
        });
        this.logger.log(`rollout move: ${sts} spec.replicas ${observed} -> ${step.target}`, 'Rollout');
      }
      return observed === target && step.action === 'steady';
    } finally {
      await scripts.unlock(this.token).catch(() => undefined);
    }
  }

  /** Pods of `version` the router records as Ready and not terminating (busy or not: they serve). */
  private async readyPods(version: string): Promise<number> {
    const names = await this.redis.smembers(this.keys.versionPods(version));
    if (names.length === 0) return 0;
    const pipeline = this.redis.pipeline();
    for (const name of names) pipeline.hmget(this.keys.pod(name), 'ready', 'terminating');
    const states = (await pipeline.exec()) ?? [];
    let ready = 0;
    for (const [error, state] of states) {
      if (error) throw error;
      const [isReady, terminating] = state as (string | null)[];
      if (isReady === '1' && terminating !== '1') ready += 1;
    }
    return ready;
  }

  /** spec.replicas; null for a StatefulSet that does not exist (deleted since: it holds no replica); any other failure is a KubernetesStepError. */
  private async readReplicas(sts: string): Promise<number | null> {
    try {
      const scale = await this.apps.readNamespacedStatefulSetScale({ name: sts, namespace: this.namespace });
      return scale.spec?.replicas ?? 0;
    } catch (error) {
      if ((error as { code?: number }).code === 404) return null;
      throw new KubernetesStepError(sts, error);
    }
  }

  /** version -> StatefulSet from the pods each version has now. */
  private async learn(): Promise<void> {
    const versions = await this.redis.smembers(this.keys.versions());
    for (const version of versions) {
      const name = await this.redis.srandmember(this.keys.versionPods(version));
      const match = name ? POD_NAME.exec(name) : null;
      if (match) await this.redis.hset(this.keys.versionStatefulSets(), version, match[1]);
    }
  }
}

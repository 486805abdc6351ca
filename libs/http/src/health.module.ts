import { Controller, DynamicModule, Get, HttpCode, Inject, Injectable, Logger, Module, OnModuleDestroy, Res } from '@nestjs/common';
import { HealthCheckService, HealthIndicatorService, TerminusModule } from '@nestjs/terminus';
import type { FastifyReply } from 'fastify';

/** A readiness dependency: resolves when usable, throws (with a reason) when not. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

export const READINESS_CHECKS = Symbol('READINESS_CHECKS');

/** Flips readiness to 503 the moment shutdown starts, before in-flight work ends. */
@Injectable()
export class ShutdownState implements OnModuleDestroy {
  shuttingDown = false;
  onModuleDestroy(): void {
    this.shuttingDown = true;
  }
}

@Controller()
class HealthController {
  private readonly logger = new Logger('Readiness');
  /** The reason readiness last failed ('' = it was up, or never checked). */
  private lastProblem = '';

  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly shutdown: ShutdownState,
    @Inject(READINESS_CHECKS) private readonly checks: ReadinessCheck[],
  ) {}

  /** Liveness: the process serves HTTP. Dependencies are readiness, not liveness. */
  @Get('health')
  @HttpCode(200)
  live(): { status: string } {
    return { status: 'ok' };
  }

  /**
   * SPEC 10.1: `/ready` is reachable from the internet (the seeds probe it on the public
   * URL), so it says only `up` or `down`; why it is down (Redis host and port, NOAUTH,
   * a watch error) goes to the log, once per change, never into the answer.
   */
  @Get('ready')
  async ready(@Res() reply: FastifyReply): Promise<void> {
    if (this.shutdown.shuttingDown) {
      void reply.status(503).send({ status: 'down' });
      return;
    }
    const problems: string[] = [];
    await this.health.check(this.checks.map((dependency) => async () => {
      const indicator = this.indicators.check(dependency.name);
      try {
        await dependency.check();
        return indicator.up();
      } catch (error) {
        problems.push(`${dependency.name}: ${(error as Error)?.message ?? String(error)}`);
        return indicator.down();
      }
    })).catch(() => undefined);
    this.report(problems.join('; '));
    void reply.status(problems.length === 0 ? 200 : 503).send({ status: problems.length === 0 ? 'up' : 'down' });
  }

  /** One log line when readiness changes (or its reason does), not one per probe. */
  private report(problem: string): void {
    if (problem === this.lastProblem) return;
    if (problem === '') this.logger.log(`ready again (was down: ${this.lastProblem})`);
    else this.logger.warn(`not ready: ${problem}`);
    this.lastProblem = problem;
  }
}

@Module({})
export class HealthModule {
  /** `checks` is a provider token or factory returning the app's readiness checks. */
  static forRoot(checksProvider: { useFactory: (...args: never[]) => ReadinessCheck[]; inject?: unknown[] }): DynamicModule {
    return {
      module: HealthModule,
      imports: [TerminusModule.forRoot({ logger: false })],
      controllers: [HealthController],
      providers: [ShutdownState, { provide: READINESS_CHECKS, ...checksProvider } as never],
      exports: [ShutdownState],
    };
  }
}

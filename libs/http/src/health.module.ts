import { Controller, DynamicModule, Get, HttpCode, Inject, Injectable, Module, OnModuleDestroy, Res } from '@nestjs/common';
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

  @Get('ready')
  async ready(@Res() reply: FastifyReply): Promise<void> {
    if (this.shutdown.shuttingDown) {
      void reply.status(503).send({ status: 'shutting_down', checks: {} });
      return;
    }
    try {
      const result = await this.health.check(this.checks.map((dependency) => async () => {
        const indicator = this.indicators.check(dependency.name);
        try {
          await dependency.check();
          return indicator.up();
        } catch (error) {
          return indicator.down({ message: (error as Error).message });
        }
      }));
      void reply.status(200).send({ status: 'ready', checks: result.details });
    } catch (error) {
      const details = (error as { response?: { details?: unknown } }).response?.details ?? {};
      void reply.status(503).send({ status: 'not_ready', checks: details });
    }
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

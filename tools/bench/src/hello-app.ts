import 'reflect-metadata';
import { Body, Controller, HttpCode, Module, Post } from '@nestjs/common';
import { runMain, startHttpApp } from '@smart-router/http';
import { JsonLogger } from '@smart-router/telemetry';

/** Baseline for the benchmark: the same bootstrap and adapter, no Redis. */
@Controller('api/v1')
class HelloController {
  @Post('hello')
  @HttpCode(200)
  hello(@Body() body: unknown) {
    return { success: true, echo: (body as { call_sid?: string } | null)?.call_sid ?? null };
  }
}

@Module({ controllers: [HelloController] })
class HelloModule {}

runMain('bench-hello', async () => {
  const port = Number(process.env.HTTP_PORT ?? 0);
  await startHttpApp({ module: HelloModule, logger: new JsonLogger('bench-hello', 'error'), host: '127.0.0.1', port });
  process.stdout.write(`hello listening on ${port}\n`);
});

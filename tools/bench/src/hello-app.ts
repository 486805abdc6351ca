import 'reflect-metadata';
import { Body, Controller, HttpCode, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';

/**
 * The benchmark's baseline (issue 12): a plain NestJS 11 + Fastify app, not our
 * bootstrap. No interceptors, no filters, no logger, no telemetry: one POST
 * route that returns its JSON body. What allocation-api costs beyond this is ours.
 */
@Controller()
class HelloController {
  @Post('hello')
  @HttpCode(200)
  hello(@Body() body: unknown): unknown {
    return body;
  }
}

@Module({ controllers: [HelloController] })
class HelloModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create<NestFastifyApplication>(HelloModule, new FastifyAdapter(), { logger: false });
  await app.listen(Number(process.env.HTTP_PORT ?? 0), '127.0.0.1');
  process.stdout.write(`hello listening on ${process.env.HTTP_PORT}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench-hello: failed to start: ${String(error)}\n`);
  process.exit(1);
});

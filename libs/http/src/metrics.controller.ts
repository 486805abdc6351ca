import { Controller, Get, Header } from '@nestjs/common';
import { Telemetry } from '@smart-router/telemetry';

@Controller()
export class MetricsController {
  constructor(private readonly telemetry: Telemetry) {}

  @Get('metrics')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  metrics(): Promise<string> {
    return this.telemetry.prometheusText();
  }
}

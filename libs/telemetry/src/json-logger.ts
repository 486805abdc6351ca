import type { LoggerService } from '@nestjs/common';
import { currentTraceId } from './telemetry';

type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * One JSON object per line, with the active trace id. Expected 4xx answers are
 * logged by the HTTP filter as a single `warn` line without a stack.
 */
export class JsonLogger implements LoggerService {
  constructor(private readonly app: string, private readonly level: Level = 'info', private readonly sink: (line: string) => void = (line) => process.stdout.write(line + '\n')) {}

  private write(level: Level, message: unknown, context?: string, extra?: Record<string, unknown>): void {
    if (ORDER[level] < ORDER[this.level]) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level, app: this.app, msg: typeof message === 'string' ? message : JSON.stringify(message) };
    if (context) record.context = context;
    const traceId = currentTraceId();
    if (traceId) record.trace_id = traceId;
    this.sink(JSON.stringify(extra ? { ...record, ...extra } : record));
  }

  log(message: unknown, context?: string): void {
    this.write('info', message, context);
  }
  info(message: string, extra?: Record<string, unknown>): void {
    this.write('info', message, undefined, extra);
  }
  warn(message: unknown, context?: string | Record<string, unknown>): void {
    typeof context === 'object' ? this.write('warn', message, undefined, context) : this.write('warn', message, context);
  }
  debug(message: unknown, context?: string): void {
    this.write('debug', message, context);
  }
  verbose(message: unknown, context?: string): void {
    this.write('debug', message, context);
  }
  error(message: unknown, stackOrContext?: string | Record<string, unknown>, context?: string): void {
    if (typeof stackOrContext === 'object') return this.write('error', message, undefined, stackOrContext);
    const looksLikeStack = typeof stackOrContext === 'string' && stackOrContext.includes('\n    at ');
    this.write('error', message, looksLikeStack ? context : stackOrContext, looksLikeStack ? { stack: stackOrContext } : undefined);
  }
}

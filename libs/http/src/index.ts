export * from './api-error';
export * from './exception.filter';
export * from './bearer-auth';
export * from './health.module';
export * from './metrics.controller';
export * from './bootstrap';
export * from './tracing.interceptor';
export * from './identifiers';

export * from './pool-metrics';
export * from './call-allocator';
export * from './pool-state.module';
export * from './wait-wakeups';
export * from './media-urls';

export * from './redis-server';
export * from './wait-for';
export * from './pool-fixture';
export * from './shared-redis';
export * from './openapi-coverage';
export * from './redis-topologies';
export * from './raw-http';
export * from './test-certificates';

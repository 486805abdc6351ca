export * from './script-loader';
export * from './redis-connection';
export * from './pool-scripts';
export * from './fleet-scripts';
export * from './webhook-replay-scripts';
export * from './rollout-scripts';
export * from './liveness-scripts';

export * from './pod-event';
export * from './jobs';

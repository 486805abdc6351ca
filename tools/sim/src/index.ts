export * from './cluster';
export * from './sim-cluster';
export * from './voice-agents';
export * from './pod-tokens';
export { parseLabelSelector } from './label-selector';
export * from './carrier';
export * from './provider-signing';

export * from './cluster';
export * from './sim-cluster';
export * from './voice-agents';
export { parseLabelSelector } from './label-selector';

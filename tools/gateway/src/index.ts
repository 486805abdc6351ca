export * from './routes';
export * from './gateway';
export * from './edge-limits';

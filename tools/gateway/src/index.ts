export * from './routes';
export * from './gateway';

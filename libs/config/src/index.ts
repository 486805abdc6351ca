export * from './env';
export * from './tier-config';
export * from './common-env';
export * from './autoscaler';
export * from './access';

export * from './kube-config';
export * from './pod-snapshot';
export * from './lease-elector';
export * from './pod-informer';
export * from './token-review.repository';

export * from './chain';
export * from './tier-document';
export * from './validation';
export * from './outcomes';
export * from './merchant-config';
export * from './tier-plan';
export * from './media-url';
export * from './rollout';

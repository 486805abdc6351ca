export * from './route-contract';
export * from './identifiers';
export * from './openapi';
export * from './operational.contract';
export * from './allocation.contract';
export * from './admin.contract';
export * from './webhooks.contract';
export * from './media-auth.contract';

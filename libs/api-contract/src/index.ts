export * from './route-contract';
export * from './identifiers';
export * from './openapi';
export * from './operational.contract';
export * from './allocation.contract';

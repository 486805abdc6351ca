export * from './keys';
export * from './acl';

export * from './stack';
export * from './supervisor';

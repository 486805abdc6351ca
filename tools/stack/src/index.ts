export * from './stack';


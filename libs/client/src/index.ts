export * from './smart-router-client';

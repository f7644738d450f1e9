export * from './errors.js';
export * from './common.js';
export * from './job.js';
export * from './method.js';
export * from './terminal-methods.js';
export * from './gate-methods.js';
export * from './peer.js';
export * from './client.js';

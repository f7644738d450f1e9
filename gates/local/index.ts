export { createLocalGate, LocalGate } from './local-gate.js';

import type { Gate, GateContext, GateFactory } from './gate.js';

export const GATE_KINDS = ['local', 'azure'] as const;
export type GateKind = (typeof GATE_KINDS)[number];

/** A kind whose code (or a package it needs) is missing from this installation. */
const unavailable = (kind: GateKind, error: unknown): Error => {
  if ((error as NodeJS.ErrnoException)?.code !== 'ERR_MODULE_NOT_FOUND') return error as Error;
  return new Error(`${kind} gate not available: ${(error as Error).message}`);
};

/** Each kind's factory, loaded on first use: a gate process loads only its own cloud's code. */
const factories: Record<GateKind, () => Promise<GateFactory>> = {
  local: async () => (await import('./local/index.js')).createLocalGate,
  azure: async () => (await import('./azure/index.js')).createAzureGate,
};

/** Build a gate of the given kind (its factory validates `context.options`). */
export async function createGate(kind: GateKind, context: GateContext): Promise<Gate> {
  let factory: GateFactory;
  try {
    factory = await factories[kind]();
  } catch (error) {
    throw unavailable(kind, error);
  }
  return factory(context);
}

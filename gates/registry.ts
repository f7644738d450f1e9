import type { Gate, GateContext, GateFactory } from './gate.js';

export const GATE_KINDS = ['local', 'azure'] as const;
export type GateKind = (typeof GATE_KINDS)[number];

export const isGateKind = (kind: string): kind is GateKind => (GATE_KINDS as readonly string[]).includes(kind);

/** A variable, not a literal: the build must not depend on which gate kinds are present in the tree. */
const AZURE_MODULE = './azure/index.js';

/** Each kind's factory, loaded on first use: a gate process loads only its own cloud's code. */
const factories: Record<GateKind, () => Promise<GateFactory>> = {
  local: async () => (await import('./local/index.js')).createLocalGate,
  azure: async () => {
    try {
      const azure = (await import(AZURE_MODULE)) as { createAzureGate: GateFactory };
      return azure.createAzureGate;
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException)?.code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes('azure/index.js');
      if (missing) throw new Error('azure gate not available in this build');
      throw error;
    }
  },
};

/** Build a gate of the given kind (its factory validates `context.options`). */
export async function createGate(kind: GateKind, context: GateContext): Promise<Gate> {
  const factory = await factories[kind]();
  return factory(context);
}

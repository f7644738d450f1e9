import { accessSync, constants } from 'node:fs';
import type { Gate, GateContext } from '../gate.js';
import { createArmClients } from './arm-clients.js';
import { AzureGate } from './azure-gate.js';
import { createCredential, credentialKind } from './credential.js';
import { FlavorCatalog } from './flavor-catalog.js';
import { AzureOptionsError, parseAzureGateOptions } from './options.js';
import { RetailPrices } from './retail-prices.js';
import { transportSettings } from './transport.js';

/** `swm-gate --kind azure`: validates `gates[].options`, builds the credential and clients, serves. */
export async function createAzureGate(context: GateContext): Promise<Gate> {
  const options = parseAzureGateOptions(context.options, context.name);
  for (const key of ['certificatePath', 'caCertPath'] as const) {
    const path = options[key];
    if (path === undefined) continue;
    try {
      accessSync(path, constants.R_OK);
    } catch {
      throw new AzureOptionsError(`invalid options of azure gate "${context.name}":\n  gates.${context.name}.options.${key}: cannot read ${path}`);
    }
  }
  const transport = transportSettings(options);
  const arm = createArmClients(options, createCredential(options, transport), transport);
  const prices = new RetailPrices(options.pricesUrl, options.currency, transport);
  const catalog = new FlavorCatalog(arm, options.location, context.name, prices, options.catalogCacheSec * 1000);
  context.logger.info(
    { location: options.location, subscription: options.subscriptionId, credential: credentialKind(options), armEndpoint: options.armEndpoint },
    'azure gate ready',
  );
  return new AzureGate(context, options, arm, catalog);
}

export { AzureGate } from './azure-gate.js';
export { parseAzureGateOptions, AzureGateOptions, AzureOptionsError } from './options.js';

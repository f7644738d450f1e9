import type { TokenCredential } from '@azure/identity';
import { ComputeManagementClient } from '@azure/arm-compute';
import { NetworkManagementClient } from '@azure/arm-network';
import { ResourceManagementClient } from '@azure/arm-resources';
import type { AzureGateOptions } from './options.js';
import type { TransportSettings } from './transport.js';

/** The three Resource Manager clients of one subscription, on one endpoint, credential and transport. */
export interface ArmClients {
  subscriptionId: string;
  resources: ResourceManagementClient;
  network: NetworkManagementClient;
  compute: ComputeManagementClient;
}

export function createArmClients(o: AzureGateOptions, credential: TokenCredential, transport: TransportSettings): ArmClients {
  const endpoint = o.armEndpoint.replace(/\/+$/, '');
  const scope = o.armScope ?? `${endpoint}/.default`;
  const common = { ...transport, endpoint, userAgentOptions: { userAgentPrefix: 'skyport-gate' } };
  return {
    subscriptionId: o.subscriptionId,
    // The AutoRest clients build URLs from $host and authenticate against credentialScopes.
    resources: new ResourceManagementClient(credential, o.subscriptionId, { ...common, $host: endpoint, credentialScopes: [scope] }),
    network: new NetworkManagementClient(credential, o.subscriptionId, { ...common, $host: endpoint, credentialScopes: [scope] }),
    compute: new ComputeManagementClient(credential, o.subscriptionId, { ...common, credentials: { scopes: [scope] } }),
  };
}

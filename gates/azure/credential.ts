import {
  AzureCliCredential,
  ClientCertificateCredential,
  ClientSecretCredential,
  ManagedIdentityCredential,
  type TokenCredential,
} from '@azure/identity';
import type { AzureGateOptions } from './options.js';
import type { TransportSettings } from './transport.js';

/** Microsoft's own login hosts, whose metadata MSAL knows; any other authority is validated by itself only. */
const MICROSOFT_AUTHORITIES = new Set(['login.microsoftonline.com', 'login.microsoftonline.us', 'login.chinacloudapi.cn', 'login.partner.microsoftonline.cn']);

export type CredentialKind = 'client-secret' | 'client-certificate' | 'managed-identity' | 'azure-cli';

export const credentialKind = (o: AzureGateOptions): CredentialKind =>
  o.clientSecret !== undefined ? 'client-secret' : o.certificatePath !== undefined ? 'client-certificate' : o.managedIdentity ? 'managed-identity' : 'azure-cli';

/** The credential the options choose, on the gate's transport (retries, trusted authorities). */
export function createCredential(o: AzureGateOptions, transport: TransportSettings): TokenCredential {
  const common = {
    authorityHost: o.authorityHost,
    // A private authority (a sovereign or test cloud) cannot be checked against Microsoft's instance list.
    disableInstanceDiscovery: !MICROSOFT_AUTHORITIES.has(new URL(o.authorityHost).hostname),
    ...transport,
  };
  switch (credentialKind(o)) {
    case 'client-secret':
      return new ClientSecretCredential(o.tenantId!, o.clientId!, o.clientSecret!, common);
    case 'client-certificate':
      return new ClientCertificateCredential(o.tenantId!, o.clientId!, { certificatePath: o.certificatePath! }, common);
    case 'managed-identity':
      return o.clientId ? new ManagedIdentityCredential({ clientId: o.clientId, ...transport }) : new ManagedIdentityCredential({ ...transport });
    case 'azure-cli':
      return new AzureCliCredential(o.tenantId ? { tenantId: o.tenantId } : {});
  }
}

import { LocalFlavorConfig, parseCoreConfig, type CoreConfig } from './config.js';

/** Port of swm-core's terminal listener (the original Sky Port's user API port). */
export const DEFAULT_CORE_PORT = 8443;
export const DEFAULT_CORE_HOST = 'localhost';
export const DEFAULT_LOCAL_GATE_PORT = 8444;
export const DEFAULT_AZURE_GATE_PORT = 8445;
export const DEFAULT_REMOTE_LOCATION = 'eastus2';
/** The VM image of Azure partitions whose job names no `cloud-image`. */
export const DEFAULT_AZURE_IMAGE = 'Canonical:ubuntu-24_04-lts:server:latest';
export const DEFAULT_AZURE_FLAVOR = 'Standard_B2s';

/** Sizes of the sandbox nodes the local gate offers. */
export const LOCAL_FLAVORS = [
  { name: 'local.small', cpus: 1, memMiB: 1024 },
  { name: 'local.medium', cpus: 2, memMiB: 4096 },
  { name: 'local.large', cpus: 4, memMiB: 8192 },
].map((flavor) => LocalFlavorConfig.parse(flavor));

export interface DefaultConfigOptions {
  coreId: string;
  host?: string;
  port?: number;
  localGatePort?: number;
  azureGatePort?: number;
  remoteLocation?: string;
}

/**
 * The configuration a new spool starts with: the local gate, managed by the core and the default remote
 * (so jobs run with no cloud account), and the Azure gate, left unmanaged until its credentials are set
 * (gates/azure/README.md). Every default of the schema is written out, so the file documents itself.
 */
export function defaultCoreConfig(options: DefaultConfigOptions): CoreConfig {
  const location = options.remoteLocation ?? DEFAULT_REMOTE_LOCATION;
  return parseCoreConfig(
    {
      core: {
        id: options.coreId,
        host: options.host ?? DEFAULT_CORE_HOST,
        port: options.port ?? DEFAULT_CORE_PORT,
      },
      gates: [
        {
          name: 'local',
          kind: 'local',
          host: '127.0.0.1',
          port: options.localGatePort ?? DEFAULT_LOCAL_GATE_PORT,
          managed: true,
          options: { flavors: LOCAL_FLAVORS },
        },
        {
          name: 'azure',
          kind: 'azure',
          host: '127.0.0.1',
          port: options.azureGatePort ?? DEFAULT_AZURE_GATE_PORT,
          managed: false,
          options: { location },
        },
      ],
      remotes: [
        {
          name: 'local',
          gate: 'local',
          default: true,
          maxNodes: 32,
          defaultImage: null,
          defaultCloudImage: null,
          defaultFlavor: 'local.small',
        },
        {
          name: 'azure',
          gate: 'azure',
          location,
          maxNodes: 8,
          defaultImage: null,
          defaultCloudImage: DEFAULT_AZURE_IMAGE,
          defaultFlavor: DEFAULT_AZURE_FLAVOR,
        },
      ],
    },
    'default configuration',
  );
}

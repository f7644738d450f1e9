import type { SecurityRule } from '@azure/arm-network';
import type { PortSpec } from '../../terminal-protocol/gate-methods.js';

const sourceOf = (sources: string[]): Pick<SecurityRule, 'sourceAddressPrefix' | 'sourceAddressPrefixes'> =>
  sources.length === 1 ? { sourceAddressPrefix: sources[0]! } : { sourceAddressPrefixes: [...sources] };

const inbound = (name: string, priority: number, sources: string[], ports: number[]): SecurityRule => ({
  name,
  protocol: 'Tcp',
  access: 'Allow',
  direction: 'Inbound',
  priority,
  sourcePortRange: '*',
  ...sourceOf(sources),
  destinationAddressPrefix: 'VirtualNetwork',
  ...(ports.length === 1 ? { destinationPortRange: String(ports[0]) } : { destinationPortRanges: ports.map(String) }),
});

/**
 * The partition's inbound rules: SSH, and the job's `in` ports, from the allowed sources only.
 * Everything else inbound stays denied by Azure's default rules; nodes reach each other through the
 * default VirtualNetwork rule, and outbound traffic (the job's `out` ports) is allowed by default.
 */
export function securityRules(sources: string[], sshPort: number, ports: PortSpec[]): SecurityRule[] {
  if (!sources.length) throw new Error('security rules need at least one source');
  const jobPorts = [...new Set(ports.filter((p) => p.direction === 'in').map((p) => p.port))].filter((p) => p !== sshPort).sort((a, b) => a - b);
  return [inbound('skyport-ssh', 100, sources, [sshPort]), ...(jobPorts.length ? [inbound('skyport-job-ports', 110, sources, jobPorts)] : [])];
}

import type { VirtualMachineRunCommand } from '@azure/arm-compute';
import { GUEST_READY_MARKER } from './cloud-init.js';
import type { NodeHostKey } from './host-keys.js';

/** The run command that tells whether a node's guest is ready (one per VM, a child resource of it). */
export const GUEST_READY_COMMAND = 'skyport-guest-ready';

/**
 * Azure reports a VM Succeeded when cloud-init has finished its early stage: packages, the container
 * runtime and `runcmd` come after. A node is ready when cloud-init's final stage is done (and did not fail),
 * its last command wrote the marker, and sshd answers on the configured port with the host key the core
 * pinned. The check runs on the VM through Azure's Run Command (the VM agent), so it reaches every node,
 * also those without a public IP, and needs no login key: the gate never holds the partition's private key.
 * With `treatFailureAsDeploymentFailure` a failing script fails the operation with the script's output.
 */
export function guestReadyScript(sshPort: number, hostKey: Pick<NodeHostKey, 'kind' | 'fingerprint'>): string {
  const type = hostKey.kind;
  return [
    '#!/bin/sh',
    '# cloud-init status --wait: 0 done, 2 done with recoverable errors, 1 failed.',
    'cloud-init status --wait >/dev/null 2>&1; code=$?',
    'if [ "$code" -ne 0 ] && [ "$code" -ne 2 ]; then echo "cloud-init failed:"; cloud-init status --long 2>&1 | tail -n 20; exit 1; fi',
    `if [ ! -f ${GUEST_READY_MARKER} ]; then echo "cloud-init ended without running its last command"; exit 1; fi`,
    `fp=$(ssh-keyscan -T 10 -t ${type} -p ${sshPort} 127.0.0.1 2>/dev/null | ssh-keygen -lf - 2>/dev/null | awk '{print $2}')`,
    `if [ "$fp" != "${hostKey.fingerprint}" ]; then echo "sshd on port ${sshPort} does not answer with the pinned host key"; exit 1; fi`,
    'echo ready',
    '',
  ].join('\n');
}

export function guestReadyCommand(location: string, tags: Record<string, string>, sshPort: number, hostKey: Pick<NodeHostKey, 'kind' | 'fingerprint'>, timeoutSec: number): VirtualMachineRunCommand {
  return {
    location,
    tags,
    source: { script: guestReadyScript(sshPort, hostKey) },
    asyncExecution: false,
    treatFailureAsDeploymentFailure: true,
    timeoutInSeconds: Math.max(1, Math.ceil(timeoutSec)),
  };
}

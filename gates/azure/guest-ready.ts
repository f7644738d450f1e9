import type { Partition } from '../../terminal-protocol/common.js';
import { GUEST_READY_MARKER } from './cloud-init.js';

/**
 * Azure reports a VM Succeeded when cloud-init has finished its early stage: packages, the container runtime and
 * `runcmd` come after. A node is ready when cloud-init's final stage is done (and did not fail) and its last
 * command wrote the marker. The gate reports a partition up once its VMs are Succeeded, with this command: the
 * core runs it on every node over SSH before it takes the partition (core/partitions/guest-check.ts), as the admin
 * user, its connection checking the host key the core pinned and reaching the port sshd was moved to. The check
 * costs no Azure request and no poll: `cloud-init status --wait` returns when the final stage ends.
 */
export function guestCheckCommand(): string {
  return [
    // 0 done, 2 done with recoverable errors, 1 failed.
    'cloud-init status --wait >/dev/null 2>&1; code=$?',
    'if [ "$code" -ne 0 ] && [ "$code" -ne 2 ]; then echo "cloud-init failed ($code):"; cloud-init status --long 2>&1 | tail -n 20; exit 1; fi',
    `if [ ! -f "$HOME/${GUEST_READY_MARKER}" ]; then echo "cloud-init ended without running its last command"; exit 1; fi`,
  ].join('\n');
}

/** The guest check of the gate's partitions, limited to `timeoutSec`. */
export const guestCheck = (timeoutSec: number): NonNullable<Partition['guestCheck']> => ({ command: guestCheckCommand(), timeoutSec });

import { ErrorCode, RpcError } from '../../../terminal-protocol/errors.js';
import { launchAndWaitCommand } from '../node-layout.js';
import type { StepEffect } from './step-context.js';

/**
 * Start the job on its head node, or re-attach to it if an earlier core already started it, and wait for its
 * exit code. The node records everything, so this is safe to repeat.
 */
export const runStep: StepEffect = async ({ job, services, signal, emit }) => {
  const session = await services.nodes.head(job.partitionName!, signal);
  let tail = '';
  const result = await session.exec(launchAndWaitCommand(job.id), {
    signal,
    onStdout: (chunk) => {
      tail += chunk.toString('utf8');
      if (tail.includes('started\n')) {
        emit({ type: 'started' });
        tail = tail.replace('started\n', '');
      }
    },
  });
  const match = /exit (\d+)/.exec(tail);
  if (result.code === 90) throw new Error(`job directory missing on node ${session.node.name}`);
  if (!match) {
    if (/lost/.test(tail)) throw new Error(`job process vanished on node ${session.node.name} without an exit code`);
    throw new RpcError(ErrorCode.Unavailable, `lost the connection to node ${session.node.name} while the job ran`);
  }
  const code = Number(match[1]);
  return { type: 'exited', exitcode: code, signal: code > 128 && code < 160 ? code - 128 : null };
};

import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { FORWARD_KEYS_DIR, FORWARD_KEYS_FILE, FORWARD_KEYS_NAME, forwardKeyLine, withoutJob } from '../../terminal-protocol/forward-keys.js';
import { generateEd25519KeyPair } from '../../terminal-protocol/ssh-keys.js';
import type { ResultOf } from '../../terminal-protocol/method.js';
import type { TerminalMethods } from '../../terminal-protocol/terminal-methods.js';
import { AgentOperationError, nodeAgent, type NodeAgent } from '../nodes/node-agent-client.js';
import type { NodeSession } from '../nodes/node-session.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { NODE_LOOPBACK } from './node-ports.js';

/** What the terminal needs to take the direct path. */
export type DirectForward = ResultOf<TerminalMethods, 'job.forward.direct'>;

/** The most the forward keys file may hold (a line is ~150 bytes: thousands of forwards). */
const MAX_FILE_BYTES = 1024 * 1024;

/** Per node session, the tail of its edits of the file: one at a time, so no edit undoes another. */
const editing = new WeakMap<NodeSession, Promise<unknown>>();

/** Read the node's forward keys, change them, write them back (whole, mode 0600), one edit at a time per node. */
function editForwardKeys(session: NodeSession, agent: NodeAgent, change: (text: string) => string): Promise<void> {
  const previous = editing.get(session) ?? Promise.resolve();
  const turn = previous
    .catch(() => undefined)
    .then(async () => {
      let text = '';
      try {
        text = (await agent.readFile(FORWARD_KEYS_FILE, MAX_FILE_BYTES)).data.toString('utf8');
      } catch (error) {
        if (!(error instanceof AgentOperationError && error.code === 'ENOENT')) throw error;
      }
      const next = change(text);
      if (next === text) return;
      await agent.writeFiles(FORWARD_KEYS_DIR, [{ path: FORWARD_KEYS_NAME, data: next, mode: 0o600 }]);
    });
  editing.set(session, turn);
  return turn;
}

/**
 * `swm forward`'s direct path (terminal-protocol/forward-keys.ts): a key pair made for this terminal and this port,
 * its public half authorized on the job's head node for a connection to the port's node port and nothing else.
 * Unavailable where there is no direct path: a head node without a public address (it is reached through another),
 * or without the node agent (which edits the file).
 */
export async function grantDirectForward(services: CoreServices, job: JobRecord, port: number): Promise<DirectForward> {
  const nodePort = await services.forwards.inNodePort(job, port);
  const head = services.nodes.ranked(job.partitionName!)[0];
  if (!head?.publicIp || !head.hostKeyFingerprint) throw new RpcError(ErrorCode.Unavailable, `job ${job.id}'s head node has no address of its own: forward through the core`);
  const session = await services.nodes.head(job.partitionName!);
  const agent = await nodeAgent(session);
  if (!agent) throw new RpcError(ErrorCode.Unavailable, `node ${head.name} has no node agent: forward through the core`);
  const pair = generateEd25519KeyPair();
  await editForwardKeys(session, agent, (text) => `${text}${forwardKeyLine(pair.publicKey, job.id, NODE_LOOPBACK, nodePort)}\n`);
  services.logger.info({ job: job.id, port, node: head.name, key: pair.fingerprint }, 'direct forward granted');
  return {
    host: head.publicIp,
    port: head.sshPort,
    user: head.sshUser,
    hostKeyFingerprint: head.hostKeyFingerprint,
    privateKey: pair.privateKey,
    target: { host: NODE_LOOPBACK, port: nodePort },
  };
}

/** Remove a job's forward keys from a node (its teardown): nothing granted for it works once it has ended. */
export async function revokeDirectForwards(session: NodeSession, jobId: string): Promise<void> {
  const agent = await nodeAgent(session);
  // A node without the agent was never granted any.
  if (agent) await editForwardKeys(session, agent, (text) => withoutJob(text, jobId));
}

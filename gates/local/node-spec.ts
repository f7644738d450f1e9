import { z } from 'zod';

/**
 * What the gate tells a node process when it starts it (over the IPC channel, with the node's listening
 * socket as the message's handle). The node process needs nothing else: it reads no file of the gate's.
 */
export const NodeSpec = z.object({
  node: z.string(),
  /** The node directory: the commands' cwd and HOME, SFTP's root. Owned by the account. */
  directory: z.string(),
  /** The node's host private key (OpenSSH format). */
  hostKey: z.string(),
  /** The partition's public key, the only credential accepted. */
  authorizedKey: z.string(),
  /** The login name clients must use. */
  user: z.string(),
  /** Environment of the commands run on the node. */
  env: z.record(z.string(), z.string()),
  /** The account the node runs as; null when the gate cannot isolate (it does not run as root). */
  account: z.object({ uid: z.number().int().positive(), gid: z.number().int().positive() }).nullable(),
  /** The process was started in a network namespace of its own, whose loopback it must bring up. */
  privateNetwork: z.boolean(),
  logLevel: z.string(),
  /**
   * The node's own address in its partition's network, where its peers reach it (node-to-node SSH): the node
   * listens there too, on the same port as the gate's listener (in the machine's network when the gate does
   * not isolate). Null: nowhere but the gate's listener.
   */
  privateAddress: z.string().nullable(),
  /** Ports of the node published on the machine's loopback (the job's `in` ports, on the head node). */
  publishedPorts: z.array(z.number().int().min(1).max(65535)),
});
export type NodeSpec = z.infer<typeof NodeSpec>;

/** Node process → gate. */
export type NodeReport = { type: 'ready'; port: number } | { type: 'failed'; reason: string };

/** Gate → node process, after the start message: `publish` carries a listener on the machine's loopback as its handle. */
export type NodeCommand = { type: 'stop' } | { type: 'publish'; port: number };

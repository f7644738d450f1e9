/**
 * How a node agent is started: the command the core runs over SSH, and how the local gate's nodes recognise it
 * to serve the agent in their own process. Not part of the program uploaded to nodes (agent.ts is).
 */

/** Where the agent of a given content hash lives on a node, relative to the SSH user's home. Pure. */
export const agentPath = (hash: string): string => `.skyport/agent-${hash}.mjs`;

/** The command that starts it (Node 18 or later on the node's PATH). Pure. */
export const agentCommand = (hash: string): string => `exec node ${agentPath(hash)}`;

/** Whether an exec request is the agent's command (the local gate serves it in process). Pure. */
export const isAgentCommand = (command: string): boolean => /^exec node \.skyport\/agent-[0-9a-f]{16}\.mjs$/.test(command);

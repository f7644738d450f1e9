import type { PortSpec } from '../../terminal-protocol/gate-methods.js';
import type { NodeSession } from '../nodes/node-session.js';

/**
 * The node-side port of each port a job declares (`#SWM ports 8888/tcp/in,8081/tcp/out`).
 *
 * A cloud node runs one job, so its ports are the declared ones. The local gate runs every job's nodes on
 * one host, where two jobs may both declare 8888: each job then gets a port of its own on the node, and
 * finds it in its environment as $SWM_PORT_8888 (a container keeps listening on 8888 inside and is
 * published on the node port). The declared port is kept whenever it is free, so a job that hard-codes
 * 8888 works wherever it runs alone. The node records the choice in .swm/ports, so a restarted core
 * forwards to the same ports.
 */
export interface NodePort {
  port: number;
  direction: 'in' | 'out';
  nodePort: number;
}

export const NODE_LOOPBACK = '127.0.0.1';

/** `.swm/ports`: one "PORT DIRECTION NODEPORT" line per declared port. Pure. */
export const formatPortsFile = (ports: readonly NodePort[]): string => ports.map((p) => `${p.port} ${p.direction} ${p.nodePort}\n`).join('');

/** Reads `.swm/ports`; lines that do not parse are dropped. Pure. */
export function parsePortsFile(text: string): NodePort[] {
  const ports: NodePort[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d{1,5}) (in|out) (\d{1,5})$/.exec(line.trim());
    if (m) ports.push({ port: Number(m[1]), direction: m[2] as 'in' | 'out', nodePort: Number(m[3]) });
  }
  return ports;
}

/** The environment variable that tells a job where a declared port is on its node. */
export const portVariable = (port: number): string => `SWM_PORT_${port}`;

/** Whether every declared port has a recorded node port (a restarted stage-in reuses them). Pure. */
export const coversAll = (declared: readonly PortSpec[], recorded: readonly NodePort[]): boolean =>
  declared.every((d) => recorded.some((r) => r.port === d.port && r.direction === d.direction));

/**
 * A loopback port free on the node right now, asked of its SSH server: it binds the port for a reverse
 * forward and releases it at once. `preferred` first (unless this core already handed it to another job on
 * that node), else one the node picks. Another process may still take it before the job binds it; the
 * core never hands the same port out twice itself.
 */
export async function probeFreePort(session: NodeSession, preferred: number, taken: ReadonlySet<number>): Promise<number> {
  const tryBind = async (port: number): Promise<number | null> => {
    try {
      const bound = await session.forwardIn(NODE_LOOPBACK, port);
      await session.unforwardIn(NODE_LOOPBACK, bound).catch(() => undefined);
      return bound;
    } catch {
      return null;
    }
  };
  if (!taken.has(preferred)) {
    const bound = await tryBind(preferred);
    if (bound !== null) return bound;
  }
  for (let attempt = 0; attempt < 8; attempt++) {
    const bound = await tryBind(0);
    if (bound !== null && !taken.has(bound)) return bound;
  }
  throw new Error(`node ${session.node.name} has no free loopback port for port ${preferred}`);
}

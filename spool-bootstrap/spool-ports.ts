import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { DEFAULT_CORE_PORT } from './defaults.js';
import { spoolPaths } from './paths.js';

const MAX_PORT = 65_535;
/** How many blocks from the default core port on are tried before giving up. */
const MAX_BLOCKS = 200;

/**
 * Whether nothing listens on `port`, on any address: binding the wildcard address conflicts with every listener
 * on the port, IPv4 or IPv6 (`::` is dual-stack; where IPv6 is off, `0.0.0.0` is tried instead). A port we may not
 * bind (below 1024 without privileges) does not count as free either.
 */
export async function portIsFree(port: number): Promise<boolean> {
  const attempt = (host: string): Promise<NodeJS.ErrnoException | null> =>
    new Promise((done) => {
      const server = createServer();
      server.once('error', (error: NodeJS.ErrnoException) => done(error));
      server.listen({ port, host, exclusive: true }, () => server.close(() => done(null)));
    });
  const error = await attempt('::');
  if (!error) return true;
  if (error.code === 'EAFNOSUPPORT' || error.code === 'EADDRNOTAVAIL') return (await attempt('0.0.0.0')) === null;
  return false;
}

/** Ports other spools on this machine are configured to use, whether or not they run now. */
export function portsOfSpools(spoolDirs: string[], except: string): Set<number> {
  const ports = new Set<number>();
  for (const dir of new Set(spoolDirs.map((d) => resolve(d)))) {
    if (dir === resolve(except)) continue;
    const config = spoolPaths(dir).config;
    if (!existsSync(config)) continue;
    try {
      const raw = JSON.parse(readFileSync(config, 'utf8')) as { core?: { port?: unknown }; gates?: Array<{ port?: unknown }> };
      for (const port of [raw.core?.port, ...(raw.gates ?? []).map((g) => g.port)]) if (typeof port === 'number') ports.add(port);
    } catch {
      // An unreadable spool claims nothing we can know of.
    }
  }
  return ports;
}

export interface SpoolPorts {
  core: number;
  /** One per gate, in the order asked for. */
  gates: number[];
}

export interface ChoosePortsOptions {
  /** The core's port when the user chose it; else the first free block from DEFAULT_CORE_PORT on is taken. */
  corePort?: number;
  gateCount: number;
  /** Ports to leave alone although nothing listens there now (other spools' configurations). */
  claimed: ReadonlySet<number>;
  isFree?: (port: number) => Promise<boolean>;
}

/**
 * Ports for a new spool, so that two spools on one machine never share one (a core would otherwise talk to the
 * other spool's gate, whose certificate it cannot trust). The gates take the ports right after the core's (8443 →
 * 8444, 8445), skipping any in use or claimed. Without a chosen core port, the first block of free ports from 8443
 * on is taken (8443-8445, else 8446-8448, ...); a chosen core port is kept as it is.
 */
export async function chooseSpoolPorts(options: ChoosePortsOptions): Promise<SpoolPorts> {
  const isFree = options.isFree ?? portIsFree;
  const usable = async (port: number): Promise<boolean> => port <= MAX_PORT && !options.claimed.has(port) && (await isFree(port));

  if (options.corePort !== undefined) {
    const gates: number[] = [];
    for (let port = options.corePort + 1; gates.length < options.gateCount; port++) {
      if (port > MAX_PORT) throw new Error(`no free ports above ${options.corePort} for the gates`);
      if (await usable(port)) gates.push(port);
    }
    return { core: options.corePort, gates };
  }

  const block = options.gateCount + 1;
  for (let i = 0, core = DEFAULT_CORE_PORT; i < MAX_BLOCKS && core + block - 1 <= MAX_PORT; i++, core += block) {
    const ports = Array.from({ length: block }, (_, k) => core + k);
    if ((await Promise.all(ports.map(usable))).every(Boolean)) return { core, gates: ports.slice(1) };
  }
  throw new Error(`no ${block} consecutive free ports from ${DEFAULT_CORE_PORT} on: choose the core's port with --port`);
}

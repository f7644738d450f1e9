import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreConfig } from '../../spool-bootstrap/config.js';
import type { HomePaths, SpoolPaths } from '../../spool-bootstrap/paths.js';
import { createSpool } from '../../spool-bootstrap/setup.js';

/** Ports free on 127.0.0.1 right now, all different (held together while the kernel picks them). */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((server) => (server.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

/** A TCP port free on 127.0.0.1 right now (the kernel picks it; another process could take it later). */
export const freePort = async (): Promise<number> => (await freePorts(1))[0]!;

export interface TestSpoolOptions {
  /** The first admin (default "admin"). */
  user?: string;
  /** Edit the configuration before it is validated and written (after the harness chose its ports). */
  configure?: (config: CoreConfig) => void;
}

export interface TestSpool {
  /** The temporary directory holding both the spool and the admin's home. */
  dir: string;
  spoolDir: string;
  /** The admin's bundle: use it as SWM_HOME. */
  homeDir: string;
  spool: SpoolPaths;
  home: HomePaths;
  config: CoreConfig;
  /** Remove the temporary directory (stop the processes using the spool first). */
  cleanup: () => void;
}

/**
 * A fresh spool in a temporary directory, made by the real setup code, with the core listening on
 * 127.0.0.1 only and the core and every default gate on free loopback ports.
 */
export async function makeTestSpool(options: TestSpoolOptions = {}): Promise<TestSpool> {
  const dir = mkdtempSync(join(tmpdir(), 'skyport-spool-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    const spoolDir = join(dir, 'spool');
    const homeDir = join(dir, 'home');
    const [corePort, ...gatePorts] = await freePorts(3);
    const created = await createSpool({
      spoolDir,
      homeDir,
      user: options.user ?? 'admin',
      host: 'localhost',
      port: corePort,
      configure: (config) => {
        config.core.listen = '127.0.0.1';
        config.gates.forEach((gate, i) => {
          gate.port = gatePorts[i] ?? gate.port;
        });
        // A partition is deleted as its job ends, unless a test asks for reuse (it configures the keep-alive).
        for (const remote of config.remotes) remote.idleTimeoutSec = 0;
        options.configure?.(config);
      },
    });
    return { dir, spoolDir, homeDir, spool: created.spool, home: created.home, config: created.config, cleanup };
  } catch (error) {
    cleanup();
    throw error;
  }
}

/**
 * A `configure` that leaves every gate unmanaged on a port nobody listens on: jobs are accepted and stay
 * queued, so a test measures or inspects the submit path alone.
 */
export const unreachableGates = (port: number) => (config: CoreConfig) => {
  for (const gate of config.gates) {
    gate.managed = false;
    gate.port = port;
  }
};

import { startCore, type CoreSystem } from '../../core/system.js';
import type { TerminalClient } from '../../terminal-protocol/client.js';
import { connectTerminal, killGates } from './core.js';
import { makeTestSpool, type TestSpool, type TestSpoolOptions } from './spool.js';

/**
 * A core started inside the test's own process (with its managed local gate as a real process), for tests
 * that must reach into it: wrap a store method to inject a fault, replace a step's effect, call `jobs.send`.
 * Everything on the wire still goes through a real terminal connection (`admin`).
 */
export interface InProcessCore {
  spool: TestSpool;
  core: CoreSystem;
  admin: TerminalClient;
  /** Stop the core and the gates it started, and remove the spool. */
  stop: () => Promise<void>;
}

export async function startInProcessCore(options: TestSpoolOptions = {}): Promise<InProcessCore> {
  const spool = await makeTestSpool(options);
  let core: CoreSystem | null = null;
  try {
    core = await startCore({ spoolDir: spool.spoolDir });
    const admin = await connectTerminal(spool.homeDir, core.port);
    const started = core;
    return {
      spool,
      core: started,
      admin,
      stop: async () => {
        await admin.close().catch(() => {});
        await started.stop({ stopGates: true });
        killGates(spool);
        spool.cleanup();
      },
    };
  } catch (error) {
    await core?.stop({ stopGates: true }).catch(() => {});
    killGates(spool);
    spool.cleanup();
    throw error;
  }
}

/**
 * Preloaded into swm-core and the gates it starts (NODE_OPTIONS=--import=<this file>, with SKYPORT_CPU_PROFILE_DIR set) when a
 * benchmark is asked for a CPU profile: node refuses `--cpu-prof` in NODE_OPTIONS, and the core is started
 * by the test harness, so the profiler is driven through the inspector instead. The profile (a .cpuprofile
 * file, as `node --cpu-prof` writes) is saved when the process exits.
 */
import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

const dir = process.env.SKYPORT_CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  // 1 ms, as node --cpu-prof: fine enough for where the time goes, light enough not to change it much.
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  process.once('exit', () => {
    // Same-thread inspector sessions answer synchronously, so this completes inside the exit handler.
    session.post('Profiler.stop', (error, result) => {
      if (error) return;
      mkdirSync(dir, { recursive: true });
      // dist/core/main.js → core-<pid>.cpuprofile, dist/gates/main.js → gates-<pid>.cpuprofile
      const role = basename(dirname(process.argv[1] ?? 'node'));
      writeFileSync(join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}

import { shellQuote } from '../nodes/node-session.js';
import { killCommand } from './node-layout.js';

/**
 * What a job leaves behind on a node before its partition goes to the next job: its runner's process group
 * and container (killCommand), and every process that left that group (`setsid`, `nohup … &`) but still
 * carries the job's SWM_JOB_ID in its environment. Its directory stays (the next job has its own).
 */
export function cleanupCommand(jobId: string, runtime: string | null): string {
  const marker = shellQuote(`SWM_JOB_ID=${jobId}`);
  // One grep over every process's environment (those of other users are unreadable, and skipped).
  return `(${killCommand(jobId, runtime)})
for f in $(grep -lszx ${marker} /proc/[0-9]*/environ); do
  p=\${f#/proc/}; kill -KILL "\${p%/environ}" 2>/dev/null
done
exit 0`;
}

import { shellQuote } from '../nodes/node-session.js';
import { killCommand } from './node-layout.js';

/**
 * What a job leaves behind on a node before its partition goes to the next job: its runner's process group
 * and container (killCommand), and every process that left that group (`setsid`, `nohup … &`) but still
 * carries the job's SWM_JOB_ID in its environment. Its directory stays (the next job has its own).
 */
export function cleanupCommand(jobId: string, runtime: string | null): string {
  const marker = shellQuote(`SWM_JOB_ID=${jobId}`);
  return `(${killCommand(jobId, runtime)})
for d in /proc/[0-9]*; do
  if grep -qzx ${marker} "$d/environ" 2>/dev/null; then kill -KILL "\${d#/proc/}" 2>/dev/null; fi
done
exit 0`;
}

import { posix } from 'node:path';
import type { Logger } from 'pino';
import type { SFTPWrapper } from 'ssh2';
import { ErrorCode, RpcError } from '../../../terminal-protocol/errors.js';
import { AgentOperationError, nodeAgent } from '../../nodes/node-agent-client.js';
import { shellQuote, type NodeSession } from '../../nodes/node-session.js';
import type { JobRecord } from '../../store/job-record.js';
import { stopJobOnNode } from '../job-cleanup.js';
import { jobImage } from './connect.js';
import { launchAndWaitCommand, nodeJobDir, ranksDir } from '../node-layout.js';
import { statRemote } from './sftp-transfer.js';
import { jobNodes } from './stage-in.js';
import type { StepEffect } from './step-context.js';

/** How one rank's runner ended. */
interface RankEnd {
  code: number;
  /** Stopped by the core because another rank failed: its own code does not count. */
  stoppedByPeer: boolean;
}

/**
 * The job's exit code from its ranks' (rank order): the first non-zero of a rank that ended on its own, else
 * the first non-zero (all were stopped), else 0. Pure.
 */
export function jobExitCode(ends: readonly RankEnd[]): number {
  return ends.find((e) => e.code !== 0 && !e.stoppedByPeer)?.code ?? ends.find((e) => e.code !== 0)?.code ?? 0;
}

/** What the node agent answers to `run`: the runner's exit code, or that it vanished without one. */
type AgentRunEnd = ({ code: number } | { lost: true }) & { stoppedByPeer: boolean; attached: boolean };

/**
 * Start (or re-attach to) the runner on one node and wait for its exit code: through the node's agent, or where
 * the node has none, with a shell command over its own exec channel.
 */
async function runOn(session: NodeSession, jobId: string, signal: AbortSignal, onStarted: () => void, logger: Logger): Promise<RankEnd> {
  const agent = await nodeAgent(session);
  if (agent) {
    const onEvent = (event: string) => {
      onStarted();
      logger.info({ node: session.node.name }, event === 'attached' ? 'the runner was started earlier: re-attached through the node agent' : 'runner started through the node agent');
    };
    const end = await agent
      .request<AgentRunEnd>({ op: 'run', dir: nodeJobDir(jobId) }, { signal, onEvent })
      .catch((error: unknown) => {
        if (error instanceof AgentOperationError && error.code === 'ENOENT') throw new Error(`job directory missing on node ${session.node.name}`);
        throw error;
      });
    if ('lost' in end) throw new Error(`job process vanished on node ${session.node.name} without an exit code`);
    return { code: end.code, stoppedByPeer: end.stoppedByPeer };
  }
  let tail = '';
  const result = await session.exec(launchAndWaitCommand(jobId), {
    signal,
    onStdout: (chunk) => {
      tail += chunk.toString('utf8');
      if (tail.includes('started\n')) {
        onStarted();
        tail = tail.replace('started\n', '');
      }
    },
  });
  const match = /exit (\d+)/.exec(tail);
  if (result.code === 90) throw new Error(`job directory missing on node ${session.node.name}`);
  if (!match) {
    if (/lost/.test(tail)) throw new Error(`job process vanished on node ${session.node.name} without an exit code`);
    throw new RpcError(ErrorCode.Unavailable, `lost the connection to node ${session.node.name} while the job ran`);
  }
  return { code: Number(match[1]), stoppedByPeer: /stopped-by-peer/.test(tail) };
}

/**
 * Start the job on its head node, or on every node (`run-on all`), or re-attach to it where an earlier core
 * already started it, and wait for its exit code. Each node records everything (swm/<job>/.swm/), so this is
 * safe to repeat. With several ranks, the first to fail stops the others (as srun --kill-on-bad-exit, or a
 * SkyPilot task whose node fails), the job's exit code is the first non-zero by rank of a rank that ended on
 * its own, and the other ranks' stdout and stderr are gathered into the head's `ranks/<rank>/` (results are
 * the head's: declare `output-files ranks/` to download them).
 */
export const runStep: StepEffect = async (context) => {
  const { job, signal, emit } = context;
  const sessions = await jobNodes(context);
  let started = false;
  const onStarted = (rank: number) => () => {
    if (rank !== 0 || started) return;
    started = true;
    emit({ type: 'started' });
  };
  if (sessions.length === 1) return exited((await runOn(sessions[0]!, job.id, signal, onStarted(0), context.logger)).code);

  // One rank's lost connection fails the step (which is retried, re-attaching everywhere): stop waiting on the others.
  const local = new AbortController();
  const abort = () => local.abort();
  signal.addEventListener('abort', abort, { once: true });
  let stopping: Promise<unknown> | null = null;
  try {
    const ends = await Promise.all(
      sessions.map(async (session, rank) => {
        try {
          const end = await runOn(session, job.id, local.signal, onStarted(rank), context.logger);
          if (end.code !== 0 && !end.stoppedByPeer && !stopping) {
            context.logger.info({ rank, node: session.node.name, exitcode: end.code }, 'a rank failed: stopping the others');
            stopping = Promise.allSettled(sessions.map((s, r) => (r === rank ? null : stopJobOnNode(s, job, { image: jobImage(job, context.services.config), byPeer: true }))));
          }
          return end;
        } catch (error) {
          local.abort();
          throw error;
        }
      }),
    );
    await stopping;
    await gatherRankLogs(sessions, job, signal);
    return exited(jobExitCode(ends));
  } finally {
    signal.removeEventListener('abort', abort);
  }
};

const exited = (code: number) => ({ type: 'exited' as const, exitcode: code, signal: code > 128 && code < 160 ? code - 128 : null });

/** Copy one remote file from a node to another, streamed through the core. False when there is none. */
async function copyBetweenNodes(from: SFTPWrapper, fromPath: string, to: SFTPWrapper, toPath: string): Promise<boolean> {
  const stat = await statRemote(from, fromPath);
  if (!stat || stat.isDirectory) return false;
  await new Promise<void>((resolve, reject) => {
    const source = from.createReadStream(fromPath);
    const target = to.createWriteStream(toPath, { mode: 0o644 });
    source.once('error', reject);
    target.once('error', reject);
    target.once('close', () => resolve());
    source.pipe(target);
  });
  return true;
}

/**
 * Bring the stdout and stderr of ranks 1.. into the head's job directory, under `ranks/<rank>/` with their
 * own names. Overwritten each time: safe to repeat.
 */
async function gatherRankLogs(sessions: readonly NodeSession[], job: JobRecord, signal: AbortSignal): Promise<void> {
  const dir = nodeJobDir(job.id);
  const names = [...new Set([job.directives.stdout ?? 'stdout.log', job.directives.stderr ?? 'stderr.log'])];
  const head = sessions[0]!;
  const targets = sessions.slice(1).flatMap((_, i) => names.map((name) => posix.dirname(`${dir}/${ranksDir}/${i + 1}/${name}`)));
  await head.run(`mkdir -p ${[...new Set(targets)].map(shellQuote).join(' ')}`, signal);
  const headSftp = await head.sftp();
  await Promise.all(
    sessions.slice(1).map(async (session, i) => {
      const sftp = await session.sftp();
      for (const name of names) await copyBetweenNodes(sftp, `${dir}/${name}`, headSftp, `${dir}/${ranksDir}/${i + 1}/${name}`);
    }),
  );
}


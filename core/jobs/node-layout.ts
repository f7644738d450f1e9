import type { JobRecord } from '../store/job-record.js';
import { shellQuote } from '../nodes/node-session.js';
import { portVariable, type NodePort } from '../forwarding/node-ports.js';

/**
 * Where a job lives on its head node (relative to the SSH user's home) and the small shell programs that
 * run it there. The node keeps the truth about the job's process: its pid, its output and its exit code are
 * files, so a restarted core re-attaches instead of starting the job twice.
 *
 *   swm/<job>/                the job's working directory (inputs, outputs, stdout.log, stderr.log)
 *   swm/<job>/.swm/job.sh     the user's script
 *   swm/<job>/.swm/run.sh     runs job.sh once (guarded by .swm/started), records .swm/exitcode
 *   swm/<job>/.swm/pid        the runner's pid (a session leader: its pid is also its process group)
 *   swm/<job>/.swm/ports      the node port of each declared port (core/forwarding/node-ports.ts)
 *   swm/<job>/.swm/hostfile   the partition's node addresses, one a line, rank order ($SWM_HOSTFILE)
 *   swm/<job>/.swm/stopped-by-peer  this rank was stopped because another rank failed (run-on all)
 *
 * A job that runs on every node (`#SWM run-on all`) has this directory on each of them, with its own run.sh
 * (its rank) and its own exit code; the head's holds the job's results.
 */
export const nodeJobDir = (jobId: string): string => `swm/${jobId}`;
export const containerName = (jobId: string): string => `swm-${jobId}`;
/** Where the non-head ranks' stdout and stderr are gathered in the head's job directory (run-on all). */
export const ranksDir = 'ranks';

/** Where the job runs within its partition: its rank (0: the head) and every node's address, in rank order. */
export interface NodePlacement {
  rank: number;
  /** Addresses the nodes reach one another at (private first), rank order: ips[0] is the head's. */
  ips: readonly string[];
}

/** A single node job's placement (and what a job recorded before placements existed gets). */
export const headOnly = (ip = '127.0.0.1'): NodePlacement => ({ rank: 0, ips: [ip] });

/** The address peers reach a node at: its private address, else its public one. Pure. */
export const peerAddress = (node: { privateIp?: string | null; publicIp?: string | null; name: string }): string =>
  node.privateIp || node.publicIp || node.name;

/** The hostfile's text: one node address a line, in rank order (MPI's, DeepSpeed's, SkyPilot's form). Pure. */
export const hostfileText = (ips: readonly string[]): string => ips.map((ip) => `${ip}\n`).join('');

/** The variables that tell a job where it runs (SkyPilot's SKYPILOT_NODE_RANK & co., with our prefix). Pure. */
export function placementEnv(placement: NodePlacement): Array<[string, string]> {
  return [
    ['SWM_NODE_RANK', String(placement.rank)],
    ['SWM_NUM_NODES', String(placement.ips.length)],
    ['SWM_NODE_IPS', placement.ips.join('\n')],
    ['SWM_HEAD_IP', placement.ips[0] ?? ''],
  ];
}

/**
 * The job's own command line. Declared ports: a plain process finds each at $SWM_PORT_<port> (its node port).
 * A container's network depends on the node, which says so in $SWM_CONTAINER_NETWORK:
 * - `host`: the node's network is a namespace of its own (the local gate), so the container shares it; it
 *   reaches the node's ends of its forwards and nothing else, and its ports are the node ports.
 * - otherwise (a cloud VM): no ports, the runtime's default network (outbound, but not the node's
 *   loopback); `in` ports only, published on the node's loopback at the node port while the container
 *   listens on the declared port; any `out` port, the node's network (so that localhost reaches the node's
 *   end of the reverse forward), with its `in` ports then the node ports themselves.
 * Never `--privileged`, and the image is always an argument, never an option.
 */
function containerCommand(job: JobRecord, runtime: string, image: string, env: Array<[string, string]>, ports: readonly NodePort[]): string {
  if (image.startsWith('-')) throw new Error(`container image ${JSON.stringify(image)} would be read as an option`);
  const run = (hostNetwork: boolean, network: string): string => {
    const portEnv = ports.map((p): [string, string] => [portVariable(p.port), String(hostNetwork ? p.nodePort : p.port)]);
    const envFlags = [...env, ...portEnv, ['SWM_HOSTFILE', '/job/.swm/hostfile']].map(([k, v]) => `-e ${shellQuote(`${k}=${v}`)}`).join(' ');
    const workdir = job.directives.workdir ? shellQuote(`/job/${job.directives.workdir}`) : '/job';
    return `${runtime} run --rm -i --name ${containerName(job.id)} ${network} -v "$PWD":/job -w ${workdir} ${envFlags} -- ${shellQuote(image)} /bin/sh /job/.swm/job.sh`;
  };
  const onCloud =
    ports.length === 0
      ? run(false, '')
      : ports.some((p) => p.direction === 'out')
        ? run(true, '--network host')
        : run(false, ports.filter((p) => p.direction === 'in').map((p) => `-p 127.0.0.1:${p.nodePort}:${p.port}`).join(' '));
  return `if [ "\${SWM_CONTAINER_NETWORK:-}" = host ]; then
${run(true, '--network host')}
else
${onCloud}
fi`;
}

/** The variables a job's script sees (besides its ports'): its own directives' and where it runs. Pure. */
const jobEnv = (job: JobRecord, placement: NodePlacement): Array<[string, string]> => [
  ...Object.entries({ ...job.directives.env, SWM_JOB_ID: job.id, SWM_JOB_NAME: job.name }),
  ...placementEnv(placement),
];

/** Whether the job runs in a container on its nodes (an image, and a container runtime found there). Pure. */
const inContainer = (job: JobRecord, image: string | null): boolean => image !== null && (job.runtime === 'podman' || job.runtime === 'docker');

/**
 * `.swm/env`: the environment of a plain-process job as shell exports, which `swm exec` sources so that a
 * command run beside the job sees what the job sees. Pure.
 */
export function jobEnvFile(job: JobRecord, ports: readonly NodePort[] = [], placement: NodePlacement = headOnly()): string {
  const portEnv = ports.map((p): [string, string] => [portVariable(p.port), String(p.nodePort)]);
  const exports = [...jobEnv(job, placement), ...portEnv].map(([k, v]) => `export ${k}=${shellQuote(v)}`).join('\n');
  return `${exports}\nexport SWM_HOSTFILE="$PWD/.swm/hostfile"\n`;
}

/** Seconds between two looks of the log clock (the precision of `swm logs --since`). */
export const LOG_CLOCK_SEC = 5;
/** The log clock's file in the job directory: lines of "<epoch seconds> <stdout bytes> <stderr bytes>". */
export const LOG_CLOCK_FILE = '.swm/logclock';
/** The most of a log clock read: 12 days of output that grew every look (about 25 bytes a line). */
export const MAX_CLOCK_BYTES = 1024 * 1024;

/**
 * The runner's log clock: a line in .swm/logclock each time the job's logs have grown, at most every
 * LOG_CLOCK_SEC (two processes a look: date and wc), so that `swm logs --since` finds where the output of a
 * moment starts. Output carries no time of its own; this is the job's, to within LOG_CLOCK_SEC. Sets $clock.
 */
function logClock(stdout: string, stderr: string): string {
  const files = `${shellQuote(stdout)} ${shellQuote(stderr)}`;
  // Created empty (a builtin: no process on the job's start): no note yet means everything is since the start.
  return `: > ${LOG_CLOCK_FILE}
(
  last='0 0'
  while sleep ${LOG_CLOCK_SEC}; do
    set -- $(wc -c ${files} 2>/dev/null) 0 x 0 x
    [ "$1 $3" = "$last" ] && continue
    last="$1 $3"
    echo "$(date +%s) $last" >> ${LOG_CLOCK_FILE}
  done
) </dev/null >/dev/null 2>&1 &
clock=$!`;
}

export function runnerScript(job: JobRecord, image: string | null, ports: readonly NodePort[] = [], placement: NodePlacement = headOnly()): string {
  const d = job.directives;
  const stdin = d.stdin ? shellQuote(d.stdin) : '/dev/null';
  // job.sh is written executable (stage-in); a script without a #! line is run by sh, as a shell does.
  // `#SWM workdir`: a directory of the job's (checked at submit never to leave it), made, and the script run there.
  const workdir = d.workdir ? shellQuote(d.workdir) : null;
  const enter = workdir ? `mkdir -p ${workdir} || exit 1\n` : '';
  const command = inContainer(job, image)
    ? `${enter}${containerCommand(job, job.runtime!, image!, jobEnv(job, placement), ports)}`
    : workdir
      ? `${jobEnvFile(job, ports, placement)}${enter}cd ${workdir} || exit 1\n"$OLDPWD"/.swm/job.sh`
      : `${jobEnvFile(job, ports, placement)}./.swm/job.sh`;
  return `#!/bin/sh
# Sky Port job runner: runs the job once, records its exit code. Builtins where they do (a process costs).
cd "\${0%/*}/.." || exit 1
mkdir .swm/started 2>/dev/null || exit 0
# Outlive a TERM sent to the job's process group long enough to record how the job ended. A handler (not an
# ignore) so that the job itself still receives the signal's default action.
trap 'true' TERM INT HUP
${logClock(d.stdout ?? 'stdout.log', d.stderr ?? 'stderr.log')}
(
${command}
) > ${shellQuote(d.stdout ?? 'stdout.log')} 2> ${shellQuote(d.stderr ?? 'stderr.log')} < ${stdin}
code=$?
kill "$clock" 2>/dev/null
printf '%s\\n' "$code" > .swm/exitcode.tmp && mv .swm/exitcode.tmp .swm/exitcode
`;
}

/**
 * Start the runner detached (its own session, so it survives the SSH channel and the core) unless it ran
 * already, then wait for it. Prints "exit <code>" at the end. Re-attaching to a runner started by an earlier
 * core (not our child) waits by polling its pid.
 */
export function launchAndWaitCommand(jobId: string): string {
  const dir = shellQuote(nodeJobDir(jobId));
  return `cd ${dir} || exit 90
if [ ! -e .swm/exitcode ]; then
  if [ ! -e .swm/pid ]; then
    setsid sh .swm/run.sh </dev/null >/dev/null 2>&1 &
    echo $! > .swm/pid.tmp && mv .swm/pid.tmp .swm/pid
    echo started
    wait $! 2>/dev/null
  else
    echo started
    read -r pid < .swm/pid
    while [ ! -e .swm/exitcode ] && kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
  fi
fi
[ -e .swm/stopped-by-peer ] && echo stopped-by-peer
if [ -e .swm/exitcode ]; then read -r code < .swm/exitcode; echo "exit $code"; else echo lost; fi`;
}

/**
 * Stop a running job: the container, then the runner's whole process group; TERM, then KILL. `byPeer`: the
 * rank is stopped because another rank failed, which it records first (its exit code then does not count).
 */
export function killCommand(jobId: string, runtime: string | null, byPeer = false): string {
  const dir = shellQuote(nodeJobDir(jobId));
  const mark = byPeer ? `[ -e .swm/exitcode ] || : > .swm/stopped-by-peer\n` : '';
  const container = runtime === 'podman' || runtime === 'docker';
  const kill = container ? `${runtime} kill ${containerName(jobId)} >/dev/null 2>&1; ` : '';
  // A container stopped while it was still being created is left "Created" by the killed `run --rm`.
  const remove = container ? `\n${runtime} rm -f ${containerName(jobId)} >/dev/null 2>&1` : '';
  return `cd ${dir} 2>/dev/null || exit 0
[ -e .swm/pid ] || exit 0
${mark}${kill}read -r pid < .swm/pid
kill -TERM -"$pid" 2>/dev/null
i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL -"$pid" 2>/dev/null${remove}
exit 0`;
}

/** The shell of an interactive `swm exec`: bash where there is one, else sh. */
const INTERACTIVE_SHELL = `if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi`;

/** Where an `swm exec` command records its pid (`token`: random, per command), so that it can be signalled. */
const execPidFile = (token: string, inContainerPath: boolean): string => `${inContainerPath ? '/tmp' : '"$HOME"'}/.swm-exec/${token}`;

/** How `swm exec` reaches a command: in the job's container, or beside the job's processes. */
export interface ExecPlace {
  tty: boolean;
  /** The job runs on this node (the head, or every node with `run-on all`): its container is here. */
  runsHere: boolean;
  term?: string;
  /** Names the command's pid file (a random token: [A-Za-z0-9_-]). */
  token: string;
}

const inJobContainer = (job: JobRecord, image: string | null, place: ExecPlace): boolean => place.runsHere && inContainer(job, image);

/**
 * What `swm exec` runs on a node: `argv` (or an interactive shell when empty) inside the job: in its container
 * where the job runs one on this node (`podman exec`, with a terminal when `tty`), else in the job's directory
 * with the job's variables (.swm/env). The command first records its pid (execSignalCommand's). Pure.
 */
export function execCommand(job: JobRecord, image: string | null, argv: readonly string[], place: ExecPlace): string {
  const dir = shellQuote(nodeJobDir(job.id));
  const program = argv.length > 0 ? argv.map(shellQuote).join(' ') : null;
  if (inJobContainer(job, image, place)) {
    const term = place.tty ? ` -t -e TERM=${shellQuote(place.term ?? 'xterm')}` : '';
    const pidFile = execPidFile(place.token, true);
    const inside = `mkdir -p /tmp/.swm-exec && echo $$ > ${pidFile}; ${program ? `exec ${program}` : INTERACTIVE_SHELL}`;
    return `exec ${job.runtime} exec -i${term} ${containerName(job.id)} /bin/sh -c ${shellQuote(inside)}`;
  }
  const term = place.tty ? `export TERM=${shellQuote(place.term ?? 'xterm')}\n` : '';
  return `mkdir -p "$HOME/.swm-exec" && echo $$ > ${execPidFile(place.token, false)}
cd ${dir} 2>/dev/null || cd
[ -r .swm/env ] && . ./.swm/env
${term}${program ? `exec ${program}` : INTERACTIVE_SHELL}`;
}

/**
 * Send `signal` to a command of execCommand: its process group where it leads one (a session of its own, as
 * SSH servers start commands), else the process. For servers that take no signal request once stdin has
 * ended. Pure.
 */
export function execSignalCommand(job: JobRecord, image: string | null, place: ExecPlace, signal: string): string {
  const container = inJobContainer(job, image, place);
  const kill = `pid=$(cat ${execPidFile(place.token, container)}) && { kill -${signal} "-$pid" 2>/dev/null || kill -${signal} "$pid"; }`;
  return container ? `exec ${job.runtime} exec ${containerName(job.id)} /bin/sh -c ${shellQuote(kill)}` : kill;
}

import { randomUUID } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { closeSync, openSync, readSync } from 'node:fs';
import { refusalIfDiskFull } from '../../spool-bootstrap/disk-full.js';
import type { Identity } from '../../spool-bootstrap/pki.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { ParamsOf, ResultOf } from '../../terminal-protocol/method.js';
import type { TerminalMethods } from '../../terminal-protocol/terminal-methods.js';
import { checkInputPath, JobInputs } from '../jobs/job-inputs.js';
import { readJobLog } from '../jobs/job-logs.js';
import { LogFollowers, type LogSubscriber } from '../jobs/log-follower.js';
import { DEFAULT_PRIORITY, parseJobScript } from '../jobs/job-script.js';
import type { Jobs } from '../jobs/jobs.js';
import { outputsDir } from '../jobs/steps/stage-out.js';
import { place } from '../scheduler/schedule.js';
import type { CoreServices } from '../services.js';
import { notYetRun, toWireJob, type JobRecord } from '../store/job-record.js';
import { visibleJob } from './caller.js';
import { forwardsOf, type JobForwards } from '../forwarding/job-forwards.js';
import type { TerminalStreams } from '../transfers/terminal-streams.js';

/** Where a submission came from (the terminal's connection). */
export interface SubmissionOrigin {
  /** The terminal's IP address: where the job's `out` ports lead unless the script names a submission-address. */
  address?: string;
}

type P<M extends keyof TerminalMethods> = ParamsOf<TerminalMethods, M>;
type R<M extends keyof TerminalMethods> = ResultOf<TerminalMethods, M>;

/**
 * Job methods of the terminal protocol: one implementation behind both the WebSocket API and the REST API.
 * Every method resolves only after its change is committed.
 */
export class JobHandlers {
  /** The port forwards of running jobs (also what the REST API reports). */
  readonly forwards: JobForwards;

  constructor(
    private readonly services: CoreServices,
    private readonly jobs: Jobs,
  ) {
    this.forwards = forwardsOf(services);
    this.forwards.start();
  }

  async submit(caller: Identity, params: P<'job.submit'>, origin: SubmissionOrigin = {}): Promise<R<'job.submit'>> {
    const { directives, warnings } = parseJobScript(params.script);
    if (!directives.submissionAddress && origin.address && directives.ports.some((p) => p.direction === 'out')) directives.submissionAddress = origin.address;
    if (directives.priority > DEFAULT_PRIORITY && caller.role !== 'admin')
      throw new RpcError(ErrorCode.Forbidden, `#SWM priority above the default (${DEFAULT_PRIORITY}) is for admins only`);
    const inputs = params.inputs ?? [];
    for (const f of inputs) checkInputPath(f.path);
    const total = inputs.reduce((sum, f) => sum + f.size, 0);
    const limit = this.services.config.limits.maxInputBytes;
    if (total > limit) throw new RpcError(ErrorCode.TooLarge, `inputs total ${total} bytes, over this core's limit of ${limit}`);
    if (new Set(inputs.map((f) => f.path)).size !== inputs.length) throw new RpcError(ErrorCode.InvalidParams, 'an input path is declared twice');
    this.checkPlacement(directives.nodes, directives.remote, directives.flavor);

    const id = randomUUID();
    const awaitingInputs = inputs.length > 0;
    const job: JobRecord = {
      id,
      owner: caller.name,
      name: params.name ?? directives.name ?? 'job',
      state: 'Q',
      stateDetails: awaitingInputs ? 'waiting for input files' : 'queued',
      step: awaitingInputs ? 'inputs' : 'queue',
      script: params.script,
      directives,
      inputs,
      priority: directives.priority,
      submitTime: new Date().toISOString(),
      ...notYetRun(),
    };
    try {
      await this.services.store.insert(job);
    } catch (error) {
      throw this.refused(error, caller);
    }
    this.services.metrics.jobSubmitted(job);
    if (!awaitingInputs) this.services.kickScheduler();
    return { id, warnings, awaitingInputs };
  }

  /** Unknown remote or flavor, or a job wider than its remote's quota: refused at submit, not after queueing. */
  private checkPlacement(nodes: number, remote?: string, flavor?: string): void {
    const remotes = this.services.config.remotes.map((r) => {
      const flavors = this.services.gates.get(r.gate)?.flavors;
      return { name: r.name, isDefault: r.default, maxNodes: r.maxNodes, defaultFlavor: r.defaultFlavor, flavors: flavors ? new Set(flavors.map((f) => f.name)) : null };
    });
    const where = place({ nodes, remote, flavor }, remotes);
    if ('reason' in where) throw new RpcError(ErrorCode.Unschedulable, where.reason);
  }

  private diskFullLoggedAt = 0;

  /**
   * A submit or upload the spool's disk had no room for: refused with DiskFull. Said in the log at most every
   * 10 s: what little room is left belongs to the jobs already accepted, not to a line per refused call.
   */
  private refused(error: unknown, caller: Identity, job?: string): unknown {
    const refusal = refusalIfDiskFull(error);
    if (refusal !== error && Date.now() - this.diskFullLoggedAt > 10_000) {
      this.diskFullLoggedAt = Date.now();
      this.services.logger.warn({ user: caller.name, job }, "the spool's disk is full: submits and uploads are refused");
    }
    return refusal;
  }

  private inputsOf(job: JobRecord): JobInputs {
    return new JobInputs(this.services.spool.job(job.id), job.inputs, this.services.inputDigests);
  }

  private awaitingInputs(caller: Identity, id: string): JobRecord {
    const job = visibleJob(this.services, caller, id);
    if (job.step !== 'inputs') throw new RpcError(ErrorCode.Conflict, `job ${id} is not waiting for inputs (state ${job.state})`);
    return job;
  }

  inputWrite(caller: Identity, params: P<'job.input.write'>): R<'job.input.write'> {
    const job = this.awaitingInputs(caller, params.id);
    try {
      return { received: this.inputsOf(job).write(params.path, params.offset, Buffer.from(params.data, 'base64')) };
    } catch (error) {
      throw this.refused(error, caller, job.id);
    }
  }

  inputStatus(caller: Identity, params: P<'job.input.status'>): R<'job.input.status'> {
    const job = visibleJob(this.services, caller, params.id);
    return { files: this.inputsOf(job).status() };
  }

  /** job.input.open: the binary-stream upload of a declared input. */
  inputOpen(caller: Identity, params: P<'job.input.open'>, streams: TerminalStreams): Promise<R<'job.input.open'>> {
    const job = this.awaitingInputs(caller, params.id);
    return streams.openInput(job, params.path, params.offset);
  }

  /** job.file.open: the binary-stream download of a file of the job's results. */
  fileOpen(caller: Identity, params: P<'job.file.open'>, streams: TerminalStreams): Promise<R<'job.file.open'>> {
    const job = visibleJob(this.services, caller, params.id);
    return streams.openOutput(job, params.path, params.offset ?? 0);
  }

  /** job.forward.open: a TCP connection to a running job's `in` port, carried on the terminal's socket. */
  forwardOpen(caller: Identity, params: P<'job.forward.open'>, streams: TerminalStreams): Promise<R<'job.forward.open'>> {
    const job = visibleJob(this.services, caller, params.id);
    return streams.openForward(() => this.forwards.connectIn(job, params.port));
  }

  ports(caller: Identity, params: P<'job.ports'>): R<'job.ports'> {
    const job = visibleJob(this.services, caller, params.id);
    return { ports: this.forwards.ports(job) };
  }

  async inputCommit(caller: Identity, params: P<'job.input.commit'>): Promise<R<'job.input.commit'>> {
    const job = this.awaitingInputs(caller, params.id);
    let next: JobRecord;
    try {
      await this.inputsOf(job).verify();
      next = await this.jobs.send(job.id, { type: 'inputs-committed' });
    } catch (error) {
      throw this.refused(error, caller, job.id);
    }
    this.services.kickScheduler();
    return toWireJob(next);
  }

  list(caller: Identity, params: P<'job.list'>): R<'job.list'> {
    const all = params?.all === true && caller.role === 'admin';
    const before = params?.before !== undefined ? Number(params.before) : undefined;
    if (before !== undefined && !Number.isInteger(before)) throw new RpcError(ErrorCode.InvalidParams, 'before: not a cursor from a previous page');
    const page = this.services.store.list({ owner: all ? undefined : caller.name, states: params?.states, limit: params?.limit ?? 100, before });
    return { jobs: page.jobs.map(toWireJob), next: page.next === null ? null : String(page.next) };
  }

  get(caller: Identity, params: P<'job.get'>): R<'job.get'> {
    return toWireJob(visibleJob(this.services, caller, params.id));
  }

  async cancel(caller: Identity, params: P<'job.cancel'>): Promise<R<'job.cancel'>> {
    visibleJob(this.services, caller, params.id);
    return toWireJob(await this.jobs.send(params.id, { type: 'cancel' }));
  }

  async requeue(caller: Identity, params: P<'job.requeue'>): Promise<R<'job.requeue'>> {
    visibleJob(this.services, caller, params.id);
    const job = await this.jobs.send(params.id, { type: 'requeue' });
    this.services.kickScheduler();
    return toWireJob(job);
  }

  private followers: LogFollowers | null = null;
  private closed = false;

  /**
   * Push a job's output to a subscriber while the job runs (job.log notifications), until the returned
   * function is called. The tails behind it start with the first follower of any job.
   */
  followLogs(caller: Identity, id: string, subscriber: LogSubscriber): () => void {
    const job = visibleJob(this.services, caller, id);
    if (this.closed) return () => undefined;
    this.followers ??= new LogFollowers(this.services);
    return this.followers.follow(job.id, subscriber);
  }

  /** Stop following every job's logs (the core is stopping). */
  close(): void {
    this.closed = true;
    this.followers?.close();
    this.followers = null;
  }

  logs(caller: Identity, params: P<'job.logs'>): Promise<R<'job.logs'>> {
    const job = visibleJob(this.services, caller, params.id);
    return readJobLog(this.services, job, params.stream, params.offset ?? 0, params.limit ?? 1024 * 1024);
  }

  files(caller: Identity, params: P<'job.files'>): R<'job.files'> {
    const job = visibleJob(this.services, caller, params.id);
    const root = outputsDir(this.services.spool.job(job.id));
    const files: { path: string; size: number }[] = [];
    const walk = (dir: string) => {
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        if (e.isDirectory()) walk(full);
        else if (e.isFile()) files.push({ path: relative(root, full), size: statSync(full).size });
      }
    };
    walk(root);
    return { files: files.sort((a, b) => a.path.localeCompare(b.path)) };
  }

  fileRead(caller: Identity, params: P<'job.file.read'>): R<'job.file.read'> {
    const job = visibleJob(this.services, caller, params.id);
    const root = outputsDir(this.services.spool.job(job.id));
    const path = resolve(root, params.path);
    if (!path.startsWith(root + sep)) throw new RpcError(ErrorCode.PathEscape, `"${params.path}" escapes the job directory`);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      throw new RpcError(ErrorCode.NotFound, `file ${params.path} of job ${job.id} not found`);
    }
    try {
      const size = statSync(path).size;
      const n = Math.max(0, Math.min(params.length, size - params.offset));
      const buffer = Buffer.alloc(n);
      if (n) readSync(fd, buffer, 0, n, params.offset);
      return { data: buffer.toString('base64'), eof: params.offset + n >= size, size };
    } finally {
      closeSync(fd);
    }
  }
}

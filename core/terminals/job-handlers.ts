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
import { newJobId, notYetRun, ownJob, toWireJob, type JobRecord } from '../store/job-record.js';
import { admitSubmission, priorityAllowed } from '../scheduler/admission.js';
import { schedulingLimits } from '../scheduler/scheduling-policy.js';
import { canSee, visibleJob } from './caller.js';
import { grantDirectForward } from '../forwarding/direct-forwards.js';
import { forwardsOf, type JobForwards } from '../forwarding/job-forwards.js';
import type { TerminalStreams } from '../transfers/terminal-streams.js';
import { hourlyPrice } from '../scheduler/spot.js';

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

  /** A submission's script and inputs checked as job.submit does, nothing stored (also swm submit --dry-run's). */
  private validated(caller: Identity, params: P<'job.submit'>, origin: SubmissionOrigin) {
    const { directives, warnings } = parseJobScript(params.script);
    if (!directives.submissionAddress && origin.address && directives.ports.some((p) => p.direction === 'out')) directives.submissionAddress = origin.address;
    if (!priorityAllowed(directives.priority, caller.role))
      throw new RpcError(ErrorCode.Forbidden, `#SWM priority above the default (${DEFAULT_PRIORITY}) is for admins only`);
    const inputs = params.inputs ?? [];
    for (const f of inputs) checkInputPath(f.path);
    const total = inputs.reduce((sum, f) => sum + f.size, 0);
    const limit = this.services.config.limits.maxInputBytes;
    if (total > limit) throw new RpcError(ErrorCode.TooLarge, `inputs total ${total} bytes, over this core's limit of ${limit}`);
    if (new Set(inputs.map((f) => f.path)).size !== inputs.length) throw new RpcError(ErrorCode.InvalidParams, 'an input path is declared twice');
    this.checkPlacement(directives.nodes, directives.remote, directives.flavor, directives.gpus);
    for (const clause of directives.depends ?? [])
      for (const other of clause.jobIds)
        if (!this.services.store.knows(other)) throw new RpcError(ErrorCode.Unschedulable, `#SWM depends ${clause.kind}:${other}: no such job`);
    const indices = directives.array?.indices ?? null;
    this.admit(caller, directives.account ?? null, directives.nodes, indices?.length ?? 1);
    if (indices && inputs.length) throw new RpcError(ErrorCode.InvalidParams, 'a job array takes no uploaded inputs: give its tasks their data another way (a shared store)');
    return { directives, warnings, inputs, indices };
  }

  async submit(caller: Identity, params: P<'job.submit'>, origin: SubmissionOrigin = {}): Promise<R<'job.submit'>> {
    const { directives, warnings, inputs, indices } = this.validated(caller, params, origin);

    const awaitingInputs = inputs.length > 0;
    const base: JobRecord = {
      id: newJobId(),
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
      ...ownJob(),
      account: directives.account ?? null,
      depends: directives.depends ?? [],
    };
    // An array is N jobs of their own, stored together; the array's id is an id of its own, shared by its tasks
    // (the id of the submission), so that "the array" and "its first task" are never the same thing.
    const jobs: JobRecord[] = indices
      ? indices.map((index, i) => ({
          ...base,
          id: i === 0 ? base.id : newJobId(),
          directives: { ...directives, env: { ...directives.env, SWM_ARRAY_TASK_ID: String(index), SWM_ARRAY_JOB_ID: '' } },
          arrayIndex: index,
          arrayCap: directives.array!.maxRunning,
        }))
      : [base];
    const arrayId = indices ? newJobId() : null;
    if (arrayId)
      for (const job of jobs) {
        job.arrayId = arrayId;
        job.directives.env.SWM_ARRAY_JOB_ID = arrayId;
        job.directives.env.SWM_ARRAY_TASK_COUNT = String(indices!.length);
      }
    try {
      await (jobs.length === 1 ? this.services.store.insert(jobs[0]!) : this.services.store.insertMany(jobs));
    } catch (error) {
      throw this.refused(error, caller);
    }
    for (const job of jobs) this.services.metrics.jobSubmitted(job);
    if (!awaitingInputs) this.services.kickScheduler();
    return { id: arrayId ?? base.id, warnings, awaitingInputs, ...(arrayId ? { tasks: jobs.map((j) => j.id) } : {}) };
  }

  /**
   * job.plan (swm submit --dry-run): the script checked as job.submit checks it, and what the scheduler would do
   * with it now (start it, on which partition, or why it would wait), with its flavor's price. Nothing is stored.
   */
  plan(caller: Identity, params: P<'job.plan'>, origin: SubmissionOrigin = {}): R<'job.plan'> {
    const { directives, warnings, indices } = this.validated(caller, params, origin);
    const preview = this.services.previewPlacement?.({
      id: randomUUID(),
      owner: caller.name,
      priority: directives.priority,
      nodes: directives.nodes,
      ...(directives.remote ? { remote: directives.remote } : {}),
      ...(directives.flavor ? { flavor: directives.flavor } : {}),
      cloudImage: directives.cloudImage ?? null,
      ports: directives.ports,
      account: directives.account ?? null,
      durationSec: directives.durationSec ?? 0,
      array: null,
      depends: directives.depends ?? [],
      ...(directives.spot !== undefined ? { spot: directives.spot } : {}),
      attempts: 0,
    });
    const remoteName = preview?.remote ?? directives.remote ?? this.services.config.remotes.find((r) => r.default)?.name ?? null;
    const remote = this.services.config.remotes.find((r) => r.name === remoteName);
    const flavorName = preview?.flavor ?? directives.flavor ?? remote?.defaultFlavor ?? null;
    const flavor = remote && flavorName ? this.services.gates.get(remote.gate)?.flavors?.find((f) => f.name === flavorName) : undefined;
    const price = hourlyPrice(flavor, directives.spot ? true : null);
    return {
      warnings,
      tasks: indices?.length ?? 1,
      remote: remoteName,
      flavor: flavorName,
      nodes: directives.nodes,
      starts: preview?.starts ?? false,
      never: preview?.never ?? false,
      reuse: preview?.reuse ?? null,
      reason: preview?.reason ?? null,
      position: preview?.position ?? null,
      pricePerHour: price !== undefined ? price * directives.nodes : null,
      currency: flavor?.currency ?? null,
    };
  }

  /** The submitter's (and account's) queued-jobs and width limits: refused at submit (admission.ts). */
  private admit(caller: Identity, account: string | null, nodes: number, adding: number): void {
    const limits = schedulingLimits(this.services.config.scheduling);
    if (!limits) return;
    const reason = admitSubmission({ owner: caller.name, account, nodes, jobs: adding }, this.services.store.queuedCounts(), limits);
    if (reason) throw new RpcError(ErrorCode.Unschedulable, reason);
  }

  /** Unknown remote or flavor, or a job wider than its remote's quota: refused at submit, not after queueing. */
  private checkPlacement(nodes: number, remote?: string, flavor?: string, gpus?: number): void {
    const remotes = this.services.config.remotes.map((r) => {
      const flavors = this.services.gates.get(r.gate)?.flavors;
      return { name: r.name, isDefault: r.default, maxNodes: r.maxNodes, defaultFlavor: r.defaultFlavor, flavors: flavors ? new Set(flavors.map((f) => f.name)) : null };
    });
    const where = place({ nodes, remote, flavor }, remotes);
    if ('reason' in where) throw new RpcError(ErrorCode.Unschedulable, where.reason);
    // GPUs asked of a flavor that has fewer (known once its gate has said what it offers).
    if (gpus && 'remote' in where) {
      const offered = this.services.gates.get(this.services.config.remotes.find((r) => r.name === where.remote.name)!.gate)?.flavors?.find((f) => f.name === where.flavor);
      if (offered && offered.gpus < gpus)
        throw new RpcError(ErrorCode.Unschedulable, `#SWM gpus ${gpus}: flavor "${where.flavor}" on remote "${where.remote.name}" has ${offered.gpus === 0 ? 'no GPUs' : `${offered.gpus} GPUs`}`);
    }
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
      const data = Buffer.from(params.data, 'base64');
      const received = this.inputsOf(job).write(params.path, params.offset, data);
      this.services.metrics.transferred('upload', data.length);
      return { received };
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

  /** job.forward.direct: a key for the job's node, good for a connection to one `in` port (swm forward's direct path). */
  forwardDirect(caller: Identity, params: P<'job.forward.direct'>): Promise<R<'job.forward.direct'>> {
    return grantDirectForward(this.services, visibleJob(this.services, caller, params.id), params.port);
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
    const page = this.services.store.list({ owner: all ? undefined : caller.name, states: params?.states, limit: params?.limit ?? 100, before, since: params?.since });
    return { jobs: page.jobs.map((j) => this.wire(j)), next: page.next === null ? null : String(page.next) };
  }

  /** A job as terminals see it: a queued one with why it waits now and its place in line, the currency of its cost. */
  private wire(job: JobRecord): R<'job.get'> {
    const cost = this.services.partitions.charges.costOf(job.id, job.cost);
    return toWireJob({ ...job, cost }, job.step === 'queue' ? this.services.pendingOf?.(job.id) : null, cost !== null ? this.currencyOf(job) : null);
  }

  /** The currency of a job's flavor's price (the gate's word), else the budgets' (USD by default). */
  private currencyOf(job: JobRecord): string {
    const remote = this.services.config.remotes.find((r) => r.name === job.remote);
    const flavor = remote ? this.services.gates.get(remote.gate)?.flavors?.find((f) => f.name === job.flavor) : undefined;
    return flavor?.currency ?? this.services.config.scheduling.budgets?.currency ?? 'USD';
  }

  get(caller: Identity, params: P<'job.get'>): R<'job.get'> {
    return this.wire(visibleJob(this.services, caller, params.id));
  }

  history(caller: Identity, params: P<'job.history'>): R<'job.history'> {
    const job = visibleJob(this.services, caller, params.id);
    return {
      events: this.services.store.events(job.id).map((e) => ({ at: new Date(e.atMs).toISOString(), step: e.step, state: e.state as JobRecord['state'], details: e.details })),
    };
  }

  /** What jobs cost, summed (cost.report): users their own, admins everyone's or one user's. */
  costReport(caller: Identity, params: P<'cost.report'>): R<'cost.report'> {
    if (params?.user !== undefined && params.user !== caller.name && caller.role !== 'admin')
      throw new RpcError(ErrorCode.Forbidden, 'only admins see the cost of other users\' jobs');
    const owner = caller.role === 'admin' ? params?.user : caller.name;
    const since = params?.since ? new Date(params.since).toISOString() : new Date(0).toISOString();
    const by = params?.by ?? 'user';
    const groups = new Map<string, { cost: number; jobs: number }>();
    let total = 0;
    let count = 0;
    const running = this.services.partitions.charges.running();
    for (const row of this.services.store.usageSince(since, owner)) {
      const r = running.has(row.id) ? { ...row, cost: (row.cost ?? 0) + running.get(row.id)! } : row;
      if (r.cost === null) continue;
      const key = (by === 'user' ? r.owner : by === 'account' ? r.account : r.remote) ?? '-';
      const g = groups.get(key) ?? { cost: 0, jobs: 0 };
      g.cost += r.cost;
      g.jobs += 1;
      groups.set(key, g);
      total += r.cost;
      count += 1;
    }
    return {
      currency: this.services.config.scheduling.budgets?.currency ?? 'USD',
      total,
      jobs: count,
      groups: [...groups].map(([key, g]) => ({ key, ...g })).sort((a, b) => b.cost - a.cost || a.key.localeCompare(b.key)),
    };
  }

  /** Cancel a job; an array's id cancels every task of it not ended yet (the answer is then its first task). */
  async cancel(caller: Identity, params: P<'job.cancel'>): Promise<R<'job.cancel'>> {
    if (!this.services.store.get(params.id)) {
      const tasks = this.services.store.arrayTasks(params.id).filter((t) => canSee(caller, t));
      if (tasks.length) {
        const answers = await Promise.all(tasks.map((t) => (t.step === 'done' ? Promise.resolve(t) : this.jobs.send(t.id, { type: 'cancel' }).catch(() => this.services.store.get(t.id) ?? t))));
        return this.wire(answers[0]!);
      }
    }
    visibleJob(this.services, caller, params.id);
    return this.wire(await this.jobs.send(params.id, { type: 'cancel' }));
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

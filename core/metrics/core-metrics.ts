import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PARTITION_STATE_NAMES } from '../partitions/partition-states.js';
import type { PartitionRecord } from '../partitions/partition-record.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';

/** Seconds a step takes, from a few milliseconds (a warm partition) to hours (a long run). */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200];
const COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

const TRANSFER_DIRECTIONS = ['upload', 'stage-in', 'stage-out', 'download'] as const;
export type TransferDirection = (typeof TRANSFER_DIRECTIONS)[number];

/**
 * What `GET /metrics` shows (Prometheus text format, prom-client), in a registry of this core's own: jobs by
 * state and remote, submissions, step durations, partitions by state, gates' health and round trip, bytes of
 * files moved each way, store commit latency, and the process's own figures (event-loop lag, memory, CPU). Counts are read from the store
 * when scraped; durations are observed as jobs move (from the job bus).
 */
export class CoreMetrics {
  readonly registry = new Registry();
  private readonly submitted: Counter;
  private readonly stepSeconds: Histogram;
  private readonly commitSeconds: Histogram;
  private readonly transferBytes: Counter;
  private readonly schedulerPasses: Counter;
  private readonly schedulerPassSeconds: Histogram;
  /** When each job entered its current step, as this core saw it (ms). */
  private readonly entered = new Map<string, { step: string; at: number }>();
  private readonly onJob = (job: JobRecord) => this.observe(job);

  constructor(private readonly services: CoreServices) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'swm_core_' });
    this.submitted = new Counter({ name: 'swm_jobs_submitted_total', help: 'Jobs accepted since the core started', registers });
    this.stepSeconds = new Histogram({
      name: 'swm_job_step_seconds',
      help: 'Time jobs spent in each step (partition, connect, stage-in, run, stage-out, teardown)',
      labelNames: ['step'],
      buckets: STEP_BUCKETS,
      registers,
    });
    this.transferBytes = new Counter({
      name: 'swm_transfer_bytes_total',
      help: "Bytes of jobs' files moved: upload (terminal to core), stage-in (core to nodes), stage-out (nodes to core), download (core to terminal)",
      labelNames: ['direction'],
      registers,
    });
    for (const direction of TRANSFER_DIRECTIONS) this.transferBytes.inc({ direction }, 0);
    this.schedulerPasses = new Counter({ name: 'swm_scheduler_passes_total', help: 'Scheduling passes started (each serves every kick made before it)', registers });
    this.schedulerPassSeconds = new Histogram({
      name: 'swm_scheduler_pass_seconds',
      help: 'Duration of a scheduling pass (the event loop is held for it): planned (the queue was read and a plan made) or skipped (nothing could be placed)',
      labelNames: ['kind'],
      buckets: COMMIT_BUCKETS,
      registers,
    });
    this.commitSeconds = new Histogram({ name: 'swm_store_commit_seconds', help: 'Duration of a group commit of the store (fsync included)', buckets: COMMIT_BUCKETS, registers });
    new Gauge({
      name: 'swm_jobs',
      help: 'Jobs by state and remote (remote "" while not placed)',
      labelNames: ['state', 'remote'],
      registers,
      collect() {
        this.reset();
        for (const row of services.store.countsByStateAndRemote()) this.set({ state: row.state, remote: row.remote ?? '' }, row.n);
      },
    });
    new Gauge({
      name: 'swm_partitions',
      help: 'Partitions not deleted, by state and remote',
      labelNames: ['state', 'remote'],
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const p of services.store.partitions() as PartitionRecord[]) counts.set(`${p.state}\0${p.remote}`, (counts.get(`${p.state}\0${p.remote}`) ?? 0) + 1);
        for (const remote of services.config.remotes)
          for (const state of PARTITION_STATE_NAMES.filter((s) => s !== 'deleted')) this.set({ state, remote: remote.name }, counts.get(`${state}\0${remote.name}`) ?? 0);
      },
    });
    new Gauge({
      name: 'swm_gate_up',
      help: 'Whether the core has a healthy connection to the gate (1) or not (0)',
      labelNames: ['gate'],
      registers,
      collect() {
        for (const [name, gate] of services.gates) this.set({ gate: name }, gate.healthy ? 1 : 0);
      },
    });
    new Gauge({
      name: 'swm_gate_round_trip_seconds',
      help: "The gate's answer time to its last heartbeat",
      labelNames: ['gate'],
      registers,
      collect() {
        this.reset();
        for (const [name, gate] of services.gates) if (gate.roundTripMs !== null) this.set({ gate: name }, gate.roundTripMs / 1000);
      },
    });
  }

  start(): void {
    this.services.bus.on('job', this.onJob);
    this.services.store.onCommit = (seconds) => this.commitSeconds.observe(seconds);
  }

  stop(): void {
    this.services.bus.off('job', this.onJob);
    this.services.store.onCommit = null;
    this.registry.clear();
  }

  /** A job was accepted (it is on disk): its time in the queue (or waiting for inputs) starts. */
  jobSubmitted(job: JobRecord): void {
    this.submitted.inc();
    this.entered.set(job.id, { step: job.step, at: Date.now() });
  }

  /** A scheduling pass starts. */
  schedulerPassStarted(): void {
    this.schedulerPasses.inc();
  }

  /** A scheduling pass ended. */
  schedulerPassEnded(seconds: number, planned: boolean): void {
    this.schedulerPassSeconds.observe({ kind: planned ? 'planned' : 'skipped' }, seconds);
  }

  /** Bytes of a job's files moved one way. */
  transferred(direction: TransferDirection, bytes: number): void {
    if (bytes > 0) this.transferBytes.inc({ direction }, bytes);
  }

  /** The text a scrape gets, and its content type. */
  async scrape(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }

  private observe(job: JobRecord): void {
    const now = Date.now();
    const was = this.entered.get(job.id);
    if (was && was.step !== job.step) this.stepSeconds.observe({ step: was.step }, (now - was.at) / 1000);
    if (job.step === 'done') this.entered.delete(job.id);
    else if (!was || was.step !== job.step) this.entered.set(job.id, { step: job.step, at: now });
  }
}

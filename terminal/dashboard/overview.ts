import type { z } from 'zod';
import type { Flavor } from '../../terminal-protocol/common.js';
import { isFinal, type Job, type JobState } from '../../terminal-protocol/job.js';
import type { GateHealth, PartitionView } from '../../terminal-protocol/terminal-methods.js';
import { ACTIVITY_WINDOW_MS, jobActivity, type Activity } from './activity.js';
import { estimateJobCost, type JobCost } from './job-cost.js';
import type { ReadOnlyCore } from './read-only-core.js';

/** Everything the page shows, in one document: what the core told this user, plus figures derived from it. */
export interface DashboardOverview {
  generatedAt: string;
  user: string;
  role: string;
  core: { id: string; version: string; uptimeSec: number; url: string };
  /** Everyone's jobs (an admin's `--all`), else the user's own. */
  allJobs: boolean;
  /** Job counts by state, as `swm status` shows them. */
  counts: Record<string, number>;
  jobs: DashboardJob[];
  /** More jobs exist than the table holds. */
  jobsCut: boolean;
  partitions: PartitionView[];
  gates: DashboardGate[];
  activity: Activity;
}

export type DashboardJob = Job & { cost: JobCost | null };
export type DashboardGate = z.infer<typeof GateHealth> & { remotes: string[] };

const ACTIVE: JobState[] = ['Q', 'W', 'T', 'R'];
const PAGE = 1000;
/** Pages read back towards the start of the activity window at most. */
const MAX_PAGES = 5;
/** Rows sent to the page: every active job, then the newest others. */
const TABLE_ROWS = 500;
const FLAVORS_TTL_MS = 5 * 60_000;

const newestFirst = (a: Job, b: Job): number => b.submit_time.localeCompare(a.submit_time);

export class OverviewReader {
  private hello: Promise<{ user: string; role: string }> | null = null;
  private flavors: { at: number; list: Flavor[] } | null = null;

  constructor(
    private readonly core: ReadOnlyCore,
    private readonly options: { all: boolean; coreUrl: string },
  ) {}

  async read(now = Date.now()): Promise<DashboardOverview> {
    const [who, status, partitions, remotes, { jobs, more }, flavors] = await Promise.all([
      this.whoAmI(),
      this.core.call('status'),
      this.core.call('partition.list'),
      this.core.call('remote.list'),
      this.jobs(now),
      this.priced(now),
    ]);
    const active = jobs.filter((j) => !isFinal(j.state));
    const shown = [...active, ...jobs.filter((j) => isFinal(j.state)).slice(0, Math.max(0, TABLE_ROWS - active.length))].sort(newestFirst);
    return {
      generatedAt: new Date(now).toISOString(),
      user: who.user,
      role: who.role,
      core: { id: status.coreId, version: status.version, uptimeSec: status.uptimeSec, url: this.options.coreUrl },
      allJobs: this.options.all,
      counts: status.jobs,
      jobs: shown.map((j) => ({ ...j, cost: estimateJobCost(j, flavors, now) })),
      jobsCut: more || shown.length < jobs.length,
      partitions,
      gates: status.gates.map((g) => ({ ...g, remotes: remotes.filter((r) => r.gate === g.name).map((r) => r.name) })),
      activity: jobActivity(jobs, now),
    };
  }

  private whoAmI(): Promise<{ user: string; role: string }> {
    this.hello ??= this.core.call('hello').catch((error: unknown) => {
      this.hello = null;
      throw error;
    });
    return this.hello;
  }

  /** Flavor prices change rarely: asked again every few minutes. */
  private async priced(now: number): Promise<Flavor[]> {
    if (this.flavors && now - this.flavors.at < FLAVORS_TTL_MS) return this.flavors.list;
    const list = await this.core.call('flavor.list');
    this.flavors = { at: now, list };
    return list;
  }

  /**
   * The newest jobs, paged back until the activity window is covered (within a bound), plus every job
   * still active however old. Newest first, each once.
   */
  private async jobs(now: number): Promise<{ jobs: Job[]; more: boolean }> {
    const all = this.options.all ? { all: true } : {};
    const recent = async (): Promise<{ jobs: Job[]; more: boolean }> => {
      const jobs: Job[] = [];
      let before: string | undefined;
      for (let page = 0; page < MAX_PAGES; page++) {
        const answer = await this.core.call('job.list', { ...all, limit: PAGE, ...(before ? { before } : {}) });
        jobs.push(...answer.jobs);
        const oldest = answer.jobs.at(-1);
        if (answer.next === null || !oldest) return { jobs, more: false };
        if (Date.parse(oldest.submit_time) < now - ACTIVITY_WINDOW_MS) return { jobs, more: true };
        before = answer.next;
      }
      return { jobs, more: true };
    };
    const [newest, active] = await Promise.all([recent(), this.core.call('job.list', { ...all, states: ACTIVE, limit: PAGE })]);
    const byId = new Map<string, Job>();
    for (const job of [...active.jobs, ...newest.jobs]) if (!byId.has(job.id)) byId.set(job.id, job);
    return { jobs: [...byId.values()].sort(newestFirst), more: newest.more || active.next !== null };
  }
}

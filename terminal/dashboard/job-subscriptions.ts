import type { Job } from '../../terminal-protocol/job.js';
import type { NotificationOf } from '../../terminal-protocol/method.js';
import type { TerminalNotifications } from '../../terminal-protocol/terminal-methods.js';
import type { ReadOnlyCore } from './read-only-core.js';

export type JobLog = NotificationOf<TerminalNotifications, 'job.log'>;

/** What one watcher of a job is told. */
export interface JobWatcher {
  event(job: Job): void;
  log(piece: JobLog): void;
  /** The connection to the core came back: whatever was pushed meanwhile is lost, read it. */
  reconnected(): void;
}

/**
 * The dashboard's job subscriptions on its one connection to the core. The core keeps one subscription per
 * job and connection, so several browser tabs watching the same job share it: the first watcher subscribes,
 * the last one to leave unsubscribes. After a lost connection, every subscription held is made again.
 */
export class JobSubscriptions {
  private readonly watchers = new Map<string, Set<JobWatcher>>();

  constructor(private readonly core: ReadOnlyCore) {
    core.on('notification', this.onNotification);
    core.on('connected', this.onConnected);
  }

  /** Starts telling `watcher` about job `id`; resolves with the job as it is now. */
  async watch(id: string, watcher: JobWatcher): Promise<Job> {
    let set = this.watchers.get(id);
    if (!set) this.watchers.set(id, (set = new Set()));
    set.add(watcher);
    try {
      return await this.core.call('job.subscribe', { id });
    } catch (error) {
      this.unwatch(id, watcher);
      throw error;
    }
  }

  unwatch(id: string, watcher: JobWatcher): void {
    const set = this.watchers.get(id);
    if (!set?.delete(watcher) || set.size > 0) return;
    this.watchers.delete(id);
    if (this.core.connected) this.core.call('job.unsubscribe', { id }).catch(() => undefined);
  }

  close(): void {
    this.core.off('notification', this.onNotification);
    this.core.off('connected', this.onConnected);
    this.watchers.clear();
  }

  private readonly onNotification = (name: string, params: unknown): void => {
    if (name === 'job.event') {
      const job = params as Job;
      for (const w of this.watchers.get(job.id) ?? []) w.event(job);
    } else if (name === 'job.log') {
      const piece = params as JobLog;
      for (const w of this.watchers.get(piece.id) ?? []) w.log(piece);
    }
  };

  private readonly onConnected = (): void => {
    for (const [id, set] of this.watchers) {
      this.core.call('job.subscribe', { id }).then(
        (job) => set.forEach((w) => w.event(job)),
        () => undefined,
      );
      set.forEach((w) => w.reconnected());
    }
  };
}

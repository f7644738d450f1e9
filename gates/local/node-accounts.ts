import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, open, readFile, readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';

const run = promisify(execFile);

/** An unprivileged OS account that a partition's node processes run as. */
export interface NodeAccount {
  name: string;
  uid: number;
  gid: number;
}

/** How many times the processes of a released account are killed before giving up on one still appearing. */
const KILL_ROUNDS = 20;

/** Whether this gate can give its nodes accounts of their own: creating accounts and dropping to them needs root. */
export const canIsolate = (): boolean => process.getuid?.() === 0;

/** The machine's pool of node accounts, shared by the local gates of every spool. */
export const ACCOUNT_PREFIX = 'swm-node-';
/** One claim file per account in use: it holds the state directory of the gate that holds the account. */
export const CLAIMS_DIR = '/var/lib/skyport/accounts';

/** An entry of /etc/passwd, or null. Pure. */
export function passwdEntry(passwd: string, name: string): NodeAccount | null {
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields.length >= 4) return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  return null;
}

/**
 * The OS accounts local gates run their nodes as: one machine-wide pool named `swm-node-<n>`, one account
 * per partition at a time. A gate claims a free account by creating its claim file exclusively (so the gates
 * of two spools never share one), makes the account on first use (useradd, with subordinate ids for rootless
 * containers) and keeps it for reuse, because creating one takes a few hundred milliseconds and locks
 * /etc/passwd. Releasing an account kills every process it still runs and removes its runtime state, so the
 * next partition starts with nothing of the previous one. An account never has a password, a shell or a home
 * outside its node directory. A claim whose gate's state directory is gone (its spool was removed) is stale
 * and is taken over.
 */
export class NodeAccounts {
  /** useradd and userdel lock /etc/passwd: one at a time. */
  private accountChanges: Promise<unknown> = Promise.resolve();

  constructor(
    /** The state directory of the gate: what its claims hold. */
    private readonly owner: string,
    private readonly logger: Logger,
  ) {}

  /** Claim a free account of the pool; returns its name (the account itself is made by `ensure`). */
  async claim(): Promise<string> {
    await mkdir(CLAIMS_DIR, { recursive: true, mode: 0o700 });
    for (let i = 0; ; i++) {
      const name = `${ACCOUNT_PREFIX}${i}`;
      const path = join(CLAIMS_DIR, name);
      try {
        const file = await open(path, 'wx', 0o600);
        await file.writeFile(this.owner);
        await file.close();
        return name;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = await readFile(path, 'utf8').catch(() => null);
      if (holder !== null && holder !== '' && !existsSync(holder)) {
        // Stale: the spool that held it is gone. Whoever unlinks it first retries the exclusive create.
        const account = await this.lookup(name);
        if (account) await this.killProcesses(account);
        await unlink(path).catch(() => undefined);
        i--;
      }
    }
  }

  /** The recorded account of a partition, claimed again if the claim went missing and made if the account did. */
  async ensure(name: string): Promise<NodeAccount> {
    const path = join(CLAIMS_DIR, name);
    await mkdir(CLAIMS_DIR, { recursive: true, mode: 0o700 });
    const holder = await readFile(path, 'utf8').catch(() => null);
    if (holder === null) await rm(path, { force: true }).then(() => open(path, 'wx', 0o600)).then(async (f) => (await f.writeFile(this.owner), f.close())).catch(() => undefined);
    else if (holder !== this.owner) throw new Error(`node account ${name} is claimed by the gate of ${holder}`);
    return (await this.lookup(name)) ?? (await this.create(name));
  }

  /** Claims of this gate that no partition records (a crash between claiming and recording): released. */
  async releaseUnrecorded(recorded: ReadonlySet<string>): Promise<void> {
    const names = await readdir(CLAIMS_DIR).catch(() => [] as string[]);
    for (const name of names) {
      if (recorded.has(name)) continue;
      if ((await readFile(join(CLAIMS_DIR, name), 'utf8').catch(() => null)) !== this.owner) continue;
      const account = await this.lookup(name);
      if (account) await this.release(account);
      else await unlink(join(CLAIMS_DIR, name)).catch(() => undefined);
    }
  }

  async lookup(name: string): Promise<NodeAccount | null> {
    return passwdEntry(await readFile('/etc/passwd', 'utf8'), name);
  }

  /** The runtime directory of an account (XDG_RUNTIME_DIR: rootless container state), owned by it. */
  runtimeDir(account: NodeAccount): string {
    return `/run/user/${account.uid}`;
  }

  async prepareRuntimeDir(account: NodeAccount): Promise<string> {
    const dir = this.runtimeDir(account);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chown(dir, account.uid, account.gid);
    return dir;
  }

  /** Kill every process the account runs (jobs left behind, container pause processes), remove its runtime state, give it back. */
  async release(account: NodeAccount): Promise<void> {
    await this.killProcesses(account);
    await rm(this.runtimeDir(account), { recursive: true, force: true });
    await rm(`/tmp/containers-user-${account.uid}`, { recursive: true, force: true });
    await rm(`/tmp/podman-run-${account.uid}`, { recursive: true, force: true });
    await unlink(join(CLAIMS_DIR, account.name)).catch(() => undefined);
  }

  private async killProcesses(account: NodeAccount): Promise<void> {
    for (let round = 0; round < KILL_ROUNDS; round++) {
      const killed = await run('pkill', ['-KILL', '-U', String(account.uid)]).then(
        () => true,
        () => false, // exit 1: no process matched
      );
      if (!killed) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private create(name: string): Promise<NodeAccount> {
    const change = this.accountChanges.then(async () => {
      const existing = await this.lookup(name);
      if (existing) return existing;
      // Not a system account (-r), so that useradd gives it subordinate uids and gids: rootless podman needs them.
      await run('useradd', ['--no-create-home', '--user-group', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--comment', 'Sky Port local node', name]);
      const made = await this.lookup(name);
      if (!made) throw new Error(`useradd ${name} succeeded but the account is not in /etc/passwd`);
      this.logger.info({ account: name, uid: made.uid }, 'node account created');
      return made;
    });
    this.accountChanges = change.catch(() => undefined);
    return change;
  }
}

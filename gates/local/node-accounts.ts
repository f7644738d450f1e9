import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chown, link, mkdir, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { writeFileAtomicAsync } from '../../spool-bootstrap/files.js';
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
const LOCK_SUFFIX = '.lock';
const LOCK_EXPIRY_MS = 60_000;

/**
 * Create a file that must not exist yet, with its content in place the moment it appears (written aside,
 * then hard-linked, which fails if the name exists): a reader never sees it empty. False when it exists.
 */
async function createExclusive(path: string, content: string): Promise<boolean> {
  const aside = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(aside, content, { mode: 0o600 });
  try {
    await link(aside, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(aside).catch(() => undefined);
  }
}

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
  /** Claims of this gate, one at a time. */
  private claims: Promise<unknown> = Promise.resolve();

  constructor(
    /** The state directory of the gate: what its claims hold. */
    private readonly owner: string,
    private readonly logger: Logger,
  ) {}

  /** Claim a free account of the pool; returns its name (the account itself is made by `ensure`). One claim at a time per gate. */
  claim(): Promise<string> {
    const next = this.claims.then(() => this.claimFree());
    this.claims = next.catch(() => undefined);
    return next;
  }

  private async claimFree(): Promise<string> {
    await mkdir(CLAIMS_DIR, { recursive: true, mode: 0o700 });
    for (let i = 0; ; i++) {
      const name = `${ACCOUNT_PREFIX}${i}`;
      const path = join(CLAIMS_DIR, name);
      if (await createExclusive(path, this.owner)) return name;
      const holder = await readFile(path, 'utf8').catch(() => null);
      if (holder && !existsSync(holder) && (await this.takeOver(name, path, holder))) return name;
    }
  }

  /**
   * Take over the claim of a removed spool's gate, under a lock, re-reading the claim once the lock is held:
   * of two gates that found it stale, only one takes it. A lock left by a gate that died holding it expires.
   */
  private async takeOver(name: string, path: string, stale: string): Promise<boolean> {
    const lock = `${path}${LOCK_SUFFIX}`;
    if (!(await createExclusive(lock, this.owner))) {
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > LOCK_EXPIRY_MS) await unlink(lock).catch(() => undefined);
      return false;
    }
    try {
      if ((await readFile(path, 'utf8').catch(() => null)) !== stale) return false;
      const account = await this.lookup(name);
      if (account) await this.killProcesses(account);
      await writeFileAtomicAsync(path, this.owner, 0o600);
      this.logger.info({ account: name, from: stale }, 'node account taken over from a removed spool');
      return true;
    } finally {
      await unlink(lock).catch(() => undefined);
    }
  }

  /** The recorded account of a partition, claimed again if the claim went missing and made if the account did. */
  async ensure(name: string): Promise<NodeAccount> {
    const path = join(CLAIMS_DIR, name);
    await mkdir(CLAIMS_DIR, { recursive: true, mode: 0o700 });
    if (!(await createExclusive(path, this.owner))) {
      const holder = await readFile(path, 'utf8').catch(() => null);
      if (holder !== this.owner) throw new Error(`node account ${name} is claimed by the gate of ${holder ?? 'another spool'}`);
    }
    return (await this.lookup(name)) ?? (await this.create(name));
  }

  /**
   * Claims of this gate that no partition records (a crash between claiming and recording): released. Also the
   * take-over locks this gate held when it died (killed in the middle of a take-over), and the claims and locks it
   * was writing aside: nothing of this gate holds or writes one while it starts, and left alone they would stay.
   */
  async releaseUnrecorded(recorded: ReadonlySet<string>): Promise<void> {
    const names = await readdir(CLAIMS_DIR).catch(() => [] as string[]);
    for (const name of names) {
      // A claim or lock this gate was writing aside when it died (createExclusive, between its write and its unlink).
      if (name.startsWith(ACCOUNT_PREFIX) && name.endsWith('.tmp') && (await readFile(join(CLAIMS_DIR, name), 'utf8').catch(() => null)) === this.owner) {
        await unlink(join(CLAIMS_DIR, name)).catch(() => undefined);
        continue;
      }
      if (name.startsWith(ACCOUNT_PREFIX) && name.endsWith(LOCK_SUFFIX) && (await readFile(join(CLAIMS_DIR, name), 'utf8').catch(() => null)) === this.owner) {
        await unlink(join(CLAIMS_DIR, name)).catch(() => undefined);
        continue;
      }
      if (recorded.has(name) || !name.startsWith(ACCOUNT_PREFIX) || name.endsWith(LOCK_SUFFIX) || name.endsWith('.tmp')) continue;
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

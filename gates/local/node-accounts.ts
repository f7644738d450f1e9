import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, rm, mkdir, chown } from 'node:fs/promises';
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

/**
 * The pool name prefix of one gate: `swm` and 6 hex digits of its state directory, so that the gates of two
 * spools on one machine never share an account. Pure.
 */
export const accountPrefix = (stateRoot: string): string => `swm${createHash('sha256').update(stateRoot).digest('hex').slice(0, 6)}-`;

/** An entry of /etc/passwd, or null. Pure. */
export function passwdEntry(passwd: string, name: string): NodeAccount | null {
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields.length >= 4) return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  return null;
}

/**
 * The OS accounts a local gate runs its nodes as: a pool named `<prefix><n>`, one account per partition at
 * a time. Accounts are made on demand (useradd, with subordinate ids for rootless containers) and kept for
 * reuse, because creating one takes a few hundred milliseconds and locks /etc/passwd; releasing one kills
 * every process it still runs and removes its runtime directory, so the next partition starts with nothing
 * of the previous one. An account never has a password, a shell or a home outside its node directory.
 */
export class NodeAccounts {
  /** useradd and userdel lock /etc/passwd: one at a time. */
  private accountChanges: Promise<unknown> = Promise.resolve();

  constructor(
    readonly prefix: string,
    private readonly logger: Logger,
  ) {}

  /** The account for a partition: `name` when recorded earlier (made again if it went missing), else a free pool name. */
  async acquire(recorded: string | undefined, inUse: ReadonlySet<string>): Promise<NodeAccount> {
    const name = recorded ?? this.freeName(inUse);
    return (await this.lookup(name)) ?? (await this.create(name));
  }

  /** The first pool name no partition holds. Pure given its input. */
  freeName(inUse: ReadonlySet<string>): string {
    for (let i = 0; ; i++) if (!inUse.has(`${this.prefix}${i}`)) return `${this.prefix}${i}`;
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

  /** Kill every process the account runs (jobs left behind, container pause processes), then remove its runtime state. */
  async release(account: NodeAccount): Promise<void> {
    for (let round = 0; round < KILL_ROUNDS; round++) {
      const killed = await run('pkill', ['-KILL', '-U', String(account.uid)]).then(
        () => true,
        () => false, // exit 1: no process matched
      );
      if (!killed) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await rm(this.runtimeDir(account), { recursive: true, force: true });
    await rm(`/tmp/containers-user-${account.uid}`, { recursive: true, force: true });
    await rm(`/tmp/podman-run-${account.uid}`, { recursive: true, force: true });
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

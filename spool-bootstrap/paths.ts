import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Where the daemon's spool lives: $SWM_SPOOL, else ~/.swm/spool. */
export const defaultSpoolDir = (): string => resolve(process.env.SWM_SPOOL ?? join(homedir(), '.swm', 'spool'));
/** Where a user's bundle lives: $SWM_HOME, else ~/.swm. */
export const defaultHomeDir = (): string => resolve(process.env.SWM_HOME ?? join(homedir(), '.swm'));

export interface CertPaths {
  dir: string;
  cert: string;
  key: string;
}

const certPaths = (dir: string): CertPaths => ({ dir, cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') });

/** The spool layout of DESIGN.md §4, in one place. */
export function spoolPaths(root: string) {
  const secure = join(root, 'secure');
  return {
    root,
    config: join(root, 'config.json'),
    secure,
    ca: certPaths(join(secure, 'ca')),
    core: certPaths(join(secure, 'core')),
    gate: (name: string) => certPaths(join(secure, 'gates', name)),
    user: (name: string) => certPaths(join(secure, 'users', name)),
    usersDir: join(secure, 'users'),
    revoked: join(secure, 'revoked.json'),
    issued: join(secure, 'issued.json'),
    dbDir: join(root, 'db'),
    db: join(root, 'db', 'swm.sqlite'),
    jobsDir: join(root, 'jobs'),
    job: (id: string) => join(root, 'jobs', id),
    partitionsDir: join(root, 'partitions'),
    partition: (name: string) => join(root, 'partitions', name),
    logsDir: join(root, 'logs'),
    gateState: (name: string) => join(root, 'gates', name),
  };
}
export type SpoolPaths = ReturnType<typeof spoolPaths>;

/** A user's bundle: what `swm` needs to reach the core. */
export function homePaths(root: string) {
  return {
    root,
    cert: join(root, 'cert.pem'),
    key: join(root, 'key.pem'),
    ca: join(root, 'ca.pem'),
    config: join(root, 'config.json'),
  };
}
export type HomePaths = ReturnType<typeof homePaths>;

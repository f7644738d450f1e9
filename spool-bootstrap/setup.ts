import { randomUUID } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { parseCoreConfig, type CoreConfig } from './config.js';
import { defaultCoreConfig } from './defaults.js';
import { writeFileAtomic } from './files.js';
import { recordIssued } from './issued.js';
import { defaultSpoolDir, homePaths, spoolPaths, type CertPaths, type HomePaths, type SpoolPaths } from './paths.js';
import { createCa, issueCertificate, type CertifiedKey, type IssueOptions } from './pki.js';
import { chooseSpoolPorts, portsOfSpools } from './spool-ports.js';
import { USER_NAME_PATTERN, issueUserBundle, writeBundle } from './users.js';

export interface CreateSpoolOptions {
  spoolDir: string;
  homeDir: string;
  /** The first admin: their bundle goes to homeDir. */
  user: string;
  /** Owner of the bundle in homeDir (the host user when setup runs as root in the release container). */
  uid?: number;
  host?: string;
  /** The core's port; when absent, the first block of free ports from 8443 on (the gates take the next ones). */
  port?: number;
  remoteLocation?: string;
  /** Spools whose configured ports this one must not take (default: ~/.swm/spool and $SWM_SPOOL). */
  otherSpools?: string[];
  /** Replace an existing spool (its content is removed first). */
  force?: boolean;
  /**
   * The address the admin's bundle names for the core, when terminals reach it elsewhere than where it listens
   * (a container's published port); default wss://HOST:PORT.
   */
  coreUrl?: string;
  /** Edit the configuration before it is validated and written (tests choose free ports this way). */
  configure?: (config: CoreConfig) => void;
}

export interface CreatedSpool {
  spool: SpoolPaths;
  home: HomePaths;
  config: CoreConfig;
  /** The core's address in the admin's bundle. */
  coreUrl: string;
}

/** Setup refused to touch an existing spool (the CLI exits 1). */
export class SpoolExistsError extends Error {
  override name = 'SpoolExistsError';
}

/** A spool is complete once its config.json exists: setup writes that file last. */
export const spoolExists = (spoolDir: string): boolean => existsSync(spoolPaths(resolve(spoolDir)).config);

/** The URL terminals use to reach the core. */
export const coreUrlOf = (config: CoreConfig): string => {
  const host = config.core.host.includes(':') ? `[${config.core.host}]` : config.core.host;
  return `wss://${host}:${config.core.port}`;
};

const wildcardAddresses = new Set(['0.0.0.0', '::', '']);
const unique = (names: string[]): string[] => [...new Set(names.filter((n) => !wildcardAddresses.has(n)))];

/**
 * Create a spool (DESIGN.md §4): its CA, the core's and every gate's certificates, the first admin's
 * bundle in homeDir, and config.json. Refuses an existing spool unless `force`.
 */
export async function createSpool(options: CreateSpoolOptions): Promise<CreatedSpool> {
  const spoolDir = resolve(options.spoolDir);
  const homeDir = resolve(options.homeDir);
  checkPreconditions(spoolDir, homeDir, options);

  const config = defaultCoreConfig({
    coreId: randomUUID(),
    host: options.host,
    port: options.port,
    remoteLocation: options.remoteLocation,
  });
  const ports = await chooseSpoolPorts({
    corePort: options.port,
    gateCount: config.gates.length,
    claimed: portsOfSpools(options.otherSpools ?? [join(homedir(), '.swm', 'spool'), defaultSpoolDir()], spoolDir),
  });
  config.core.port = ports.core;
  config.gates.forEach((gate, i) => (gate.port = ports.gates[i]!));
  options.configure?.(config);
  const validated = parseCoreConfig(config, 'configuration');

  const spool = spoolPaths(spoolDir);
  const home = homePaths(homeDir);
  if (options.force) clearDirectory(spoolDir);
  for (const dir of [spool.root, spool.secure, spool.ca.dir, spool.core.dir, join(spool.secure, 'gates'), spool.usersDir, spool.dbDir, spool.jobsDir, spool.partitionsDir, spool.logsDir]) {
    makePrivateDir(dir);
  }

  const ca = createCa(`Sky Port CA ${validated.core.id.slice(0, 8)}`);
  writeCertifiedKey(spool.ca, ca);
  const servers: Array<{ paths: CertPaths; issue: IssueOptions }> = [
    {
      paths: spool.core,
      issue: { role: 'core', name: 'core', sans: unique([hostname(), validated.core.host, 'localhost', '127.0.0.1']) },
    },
    ...validated.gates.map((gate) => ({
      paths: spool.gate(gate.name),
      issue: { role: 'gate' as const, name: gate.name, sans: unique(['localhost', '127.0.0.1', gate.host]) },
    })),
  ];
  for (const server of servers) {
    const issued = issueCertificate(ca, server.issue);
    makePrivateDir(server.paths.dir);
    writeCertifiedKey(server.paths, issued);
    recordIssued(spool.issued, [{ serial: issued.serial, role: server.issue.role, name: server.issue.name }]);
  }

  const coreUrl = options.coreUrl ?? coreUrlOf(validated);
  const bundle = issueUserBundle(spool, coreUrl, options.user, 'admin');
  makePrivateDir(homeDir);
  writeBundle(homeDir, bundle);
  if (options.uid !== undefined && options.uid !== process.getuid?.()) {
    for (const path of [home.root, home.cert, home.key, home.ca, home.config]) chownSync(path, options.uid, -1);
  }

  // Last: a spool with a config.json is a complete one.
  writeFileAtomic(spool.config, JSON.stringify(validated, null, 2) + '\n', 0o600);
  return { spool, home, config: validated, coreUrl };
}

function checkPreconditions(spoolDir: string, homeDir: string, options: CreateSpoolOptions): void {
  if (!USER_NAME_PATTERN.test(options.user)) {
    throw new Error(`invalid user name "${options.user}": use letters, digits, "_", "." or "-", starting with a letter or "_"`);
  }
  const homeInSpool = relative(spoolDir, homeDir);
  if (homeInSpool === '' || (!homeInSpool.startsWith('..') && !isAbsolute(homeInSpool))) {
    throw new Error(`the user's directory ${homeDir} must not be inside the spool ${spoolDir}`);
  }
  const currentUid = process.getuid?.();
  if (options.uid !== undefined && options.uid !== currentUid && currentUid !== 0) {
    throw new Error(`only root may hand the bundle to uid ${options.uid} (running as uid ${currentUid})`);
  }
  if (options.force) return;
  if (spoolExists(spoolDir)) {
    throw new SpoolExistsError(`a spool already exists in ${spoolDir}; nothing was changed (recreate it with --force)`);
  }
  if (existsSync(spoolDir) && readdirSync(spoolDir).length > 0) {
    throw new SpoolExistsError(`${spoolDir} is not empty and holds no spool; nothing was changed (use --force to clear it)`);
  }
}

/** Remove what the directory holds, not the directory itself: it may be a mount point. */
function clearDirectory(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
}

function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

function writeCertifiedKey(paths: CertPaths, issued: CertifiedKey): void {
  writeFileAtomic(paths.key, issued.keyPem, 0o600);
  writeFileAtomic(paths.cert, issued.certPem, 0o644);
}

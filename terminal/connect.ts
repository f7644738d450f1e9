import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { UserConfig } from '../spool-bootstrap/config.js';
import { defaultHomeDir, homePaths } from '../spool-bootstrap/paths.js';
import { TerminalClient, type Credentials } from '../terminal-protocol/client.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import { CliError, ExitCode } from './exit-codes.js';

/** Everything `swm` needs to reach the core, read from the user's bundle ($SWM_HOME). */
export interface CoreBundle {
  home: string;
  coreUrl: string;
  /** The user the bundle was issued to, when its config.json says. */
  user: string | null;
  credentials: Credentials;
}

export interface BundleOptions {
  /** `--home DIR`; else $SWM_HOME; else ~/.swm. */
  home?: string;
  /** Overrides the bundle's core URL ($SWM_CORE_URL). */
  coreUrl?: string;
}

/** ~/.swm rather than /root/.swm in messages: shorter, and what people typed. */
export function displayPath(path: string): string {
  const home = homedir();
  return path === home || path.startsWith(`${home}/`) ? `~${path.slice(home.length)}` : path;
}

const missing = (error: unknown): boolean => (error as NodeJS.ErrnoException)?.code === 'ENOENT';

function readBundleFile(path: string, what: string, home: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if (missing(error)) throw new CliError(`no ${what} in ${displayPath(home)}: run swm-setup or ask an admin for a bundle`);
    throw new CliError(`cannot read ${displayPath(path)}: ${(error as Error).message}`);
  }
}

/** A damaged bundle file is named as such, not reported later as a failed connection. */
function checkPem(path: string, text: string, kind: 'certificate' | 'key'): void {
  try {
    if (kind === 'key') createPrivateKey(text);
    else new X509Certificate(text);
  } catch (error) {
    throw new CliError(`${displayPath(path)} is not a valid PEM ${kind} (${(error as Error).message}): ask an admin for a new bundle`);
  }
}

/** The core URL a terminal dials: wss:// (https:// is accepted as its synonym); TLS is not optional. */
export function normalizeCoreUrl(raw: string, source: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`${source}: "${raw}" is not a URL (expected wss://HOST:PORT)`);
  }
  if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'wss:') throw new CliError(`${source}: "${raw}" must start with wss:// (the core only speaks TLS)`);
  return url.toString();
}

function readUserConfig(path: string, home: string): UserConfig {
  const text = readBundleFile(path, 'core address (config.json)', home);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new CliError(`${displayPath(path)} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = UserConfig.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new CliError(`invalid ${displayPath(path)}: ${problems}`);
  }
  return parsed.data;
}

/** Reads cert.pem, key.pem, ca.pem and config.json; each missing piece gets a message that says what to do. */
export function loadBundle(options: BundleOptions = {}): CoreBundle {
  const home = options.home ? resolve(options.home) : defaultHomeDir();
  const paths = homePaths(home);
  const cert = readBundleFile(paths.cert, 'certificate', home);
  const key = readBundleFile(paths.key, 'private key (key.pem)', home);
  const ca = readBundleFile(paths.ca, 'CA certificate (ca.pem)', home);
  checkPem(paths.cert, cert, 'certificate');
  checkPem(paths.key, key, 'key');
  checkPem(paths.ca, ca, 'certificate');
  const override = options.coreUrl ?? process.env.SWM_CORE_URL;
  let coreUrl: string;
  let user: string | null = null;
  if (override) {
    coreUrl = normalizeCoreUrl(override, 'SWM_CORE_URL');
    try {
      user = readUserConfig(paths.config, home).user ?? null;
    } catch {
      // The URL came from the environment; config.json is optional then.
    }
  } else {
    const config = readUserConfig(paths.config, home);
    coreUrl = normalizeCoreUrl(config.coreUrl, `${displayPath(paths.config)}: coreUrl`);
    user = config.user ?? null;
  }
  return { home, coreUrl, user, credentials: { cert, key, ca } };
}

export interface ConnectOptions {
  /** Re-establish a lost connection (long-lived commands: wait, logs -f); callers re-subscribe on `connected`. */
  reconnect?: boolean;
}

/** A hint for TLS failures, which otherwise read as socket trivia. */
function unreachable(url: string, error: unknown): CliError {
  const message = (error as Error)?.message ?? String(error);
  const tls = /certificate|ssl|tls|alert|socket hang up|disconnected before secure/i.test(message);
  const hint = tls ? ' (the core refused the TLS handshake: is your certificate from this core and not revoked?)' : '';
  return new CliError(
    `cannot reach the core at ${url}: ${message.replace(/^cannot connect to \S+: /, '')}${hint}`,
    ExitCode.Unreachable,
  );
}

export async function connectCore(bundle: CoreBundle, options: ConnectOptions = {}): Promise<TerminalClient> {
  const client = new TerminalClient({
    url: bundle.coreUrl,
    credentials: bundle.credentials,
    reconnect: options.reconnect ?? false,
    callTimeoutMs: 120_000,
  });
  try {
    await client.connect();
  } catch (error) {
    throw unreachable(bundle.coreUrl, error);
  }
  return client;
}

/**
 * Connects, runs `work`, closes. An Unavailable error raised because the connection itself dropped
 * becomes exit code 5; the same code from the core (a gate is down) stays an error reported by the core.
 */
export async function withCore<T>(
  bundleOptions: BundleOptions,
  work: (core: TerminalClient, bundle: CoreBundle) => Promise<T>,
  options: ConnectOptions = {},
): Promise<T> {
  const bundle = loadBundle(bundleOptions);
  const core = await connectCore(bundle, options);
  try {
    return await work(core, bundle);
  } catch (error) {
    if (error instanceof RpcError && error.code === ErrorCode.Unavailable && !core.connected)
      throw new CliError(`lost the connection to the core at ${bundle.coreUrl}: ${error.message}`, ExitCode.Unreachable);
    throw error;
  } finally {
    await core.close();
  }
}

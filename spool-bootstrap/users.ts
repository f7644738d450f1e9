import { readFileSync } from 'node:fs';
import type { Role } from '../terminal-protocol/common.js';
import { writeFileAtomic } from './files.js';
import { readIssued, recordIssued } from './issued.js';
import { homePaths, type SpoolPaths } from './paths.js';
import { issueCertificate, normalizeSerial } from './pki.js';
import type { Revocations } from './revocations.js';

/** What a person needs to reach the core: their certificate and key, the CA, and where the core is. */
export interface UserBundle {
  name: string;
  role: 'admin' | 'user' | 'monitor';
  certPem: string;
  keyPem: string;
  caPem: string;
  coreUrl: string;
  /** Normalised (lower-case hex, no leading zeros), as identityOf and the registry spell it. */
  serial: string;
}

/** User names double as directory names under secure/users/, so they are kept to a safe alphabet. */
export const USER_NAME_PATTERN = /^[a-z_][a-z0-9_.-]{0,63}$/i;

const peopleRoles: readonly Role[] = ['admin', 'user'];

/**
 * Issue a certificate for a person, signed by the spool CA. The registry (secure/issued.json) records it
 * so it can be revoked by name; the spool keeps a copy of the certificate only: the key exists only in
 * the returned bundle, which is handed to that person.
 */
export function issueUserBundle(spool: SpoolPaths, coreUrl: string, name: string, role: 'admin' | 'user' | 'monitor'): UserBundle {
  if (!USER_NAME_PATTERN.test(name)) {
    throw new Error(`invalid user name "${name}": use letters, digits, "_", "." or "-", starting with a letter or "_"`);
  }
  const ca = { certPem: readFileSync(spool.ca.cert, 'utf8'), keyPem: readFileSync(spool.ca.key, 'utf8') };
  const issued = issueCertificate(ca, { role, name });
  recordIssued(spool.issued, [{ serial: issued.serial, role, name }]);
  writeFileAtomic(spool.user(name).cert, issued.certPem, 0o644);
  return { name, role, certPem: issued.certPem, keyPem: issued.keyPem, caPem: ca.certPem, coreUrl, serial: normalizeSerial(issued.serial) };
}

/** Write a bundle as a $SWM_HOME directory (cert.pem, key.pem 0600, ca.pem, config.json) that `swm` uses as is. */
export function writeBundle(dir: string, bundle: Pick<UserBundle, 'name' | 'certPem' | 'keyPem' | 'caPem' | 'coreUrl'>): void {
  const home = homePaths(dir);
  writeFileAtomic(home.key, bundle.keyPem, 0o600);
  writeFileAtomic(home.cert, bundle.certPem, 0o644);
  writeFileAtomic(home.ca, bundle.caPem, 0o644);
  writeFileAtomic(home.config, JSON.stringify({ coreUrl: bundle.coreUrl, user: bundle.name }, null, 2) + '\n', 0o644);
}

/** Serials of every certificate issued to a name with one of the given roles (by default: people, not the core or gates). */
export function serialsOf(spool: SpoolPaths, name: string, roles: readonly Role[] = peopleRoles): string[] {
  return readIssued(spool.issued)
    .filter((c) => c.name === name && roles.includes(c.role))
    .map((c) => c.serial);
}

/**
 * Revoke every certificate ever issued to a person; returns their serials. The caller closes the open
 * connections of these serials (MtlsListener.disconnect). Throws "unknown user" when none were issued.
 */
export function revokeUser(spool: SpoolPaths, revocations: Revocations, name: string): string[] {
  const serials = serialsOf(spool, name);
  if (serials.length === 0) throw new Error(`unknown user "${name}": no certificate was issued to this name`);
  revocations.revoke(serials);
  return serials;
}

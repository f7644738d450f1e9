import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { Role } from '../terminal-protocol/common.js';
import { writeFileAtomic } from './files.js';
import { normalizeSerial } from './pki.js';

/** One certificate the spool CA signed: enough to revoke it by name later. */
export const IssuedCertificate = z
  .object({
    serial: z.string().min(1),
    role: Role,
    name: z.string().min(1),
    issuedAt: z.string(),
  })
  .strict();
export type IssuedCertificate = z.infer<typeof IssuedCertificate>;

const IssuedRegistry = z.array(IssuedCertificate);

/** Every certificate recorded in secure/issued.json, oldest first; none when the file does not exist. */
export function readIssued(path: string): IssuedCertificate[] {
  if (!existsSync(path)) return [];
  const parsed = IssuedRegistry.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success) throw new Error(`${path} is not a certificate registry: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/** Append certificates to the registry, persisted before returning. */
export function recordIssued(path: string, certificates: Array<Omit<IssuedCertificate, 'issuedAt'> & { issuedAt?: string }>): void {
  const now = new Date().toISOString();
  const entries = certificates.map((c) => ({
    serial: normalizeSerial(c.serial),
    role: c.role,
    name: c.name,
    issuedAt: c.issuedAt ?? now,
  }));
  writeFileAtomic(path, JSON.stringify([...readIssued(path), ...entries], null, 2) + '\n', 0o600);
}

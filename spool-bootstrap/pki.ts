import { X509Certificate, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import type { Role } from '../terminal-protocol/common.js';

/** A certificate and its private key, PEM-encoded. */
export interface CertifiedKey {
  certPem: string;
  keyPem: string;
  serial: string;
}

/** Who a certificate speaks for: its role (subject OU) and name (subject CN). */
export interface Identity {
  role: Role;
  name: string;
  serial: string;
}

export interface IssueOptions {
  role: Role;
  name: string;
  /** DNS names and IP addresses for server certificates (core, gates). */
  sans?: string[];
  validityDays?: number;
  /** For tests: a certificate that is already expired. */
  notBefore?: Date;
  notAfter?: Date;
}

const ORGANIZATION = 'Sky Port';
const KEY_BITS = 2048;
const roles: readonly Role[] = ['admin', 'user', 'core', 'gate', 'monitor'];

const newSerial = (): string => {
  const bytes = randomBytes(16);
  bytes[0]! &= 0x7f; // positive INTEGER
  return bytes.toString('hex');
};

const generateKeys = (): forge.pki.rsa.KeyPair => forge.pki.rsa.generateKeyPair({ bits: KEY_BITS, e: 0x10001 });

/** A new self-signed certificate authority for one spool. */
export function createCa(commonName: string, validityDays = 3650): CertifiedKey {
  const keys = generateKeys();
  const cert = forge.pki.createCertificate();
  const serial = newSerial();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + validityDays * 86_400_000);
  const subject = [
    { name: 'commonName', value: commonName },
    { name: 'organizationName', value: ORGANIZATION },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey), serial };
}

/**
 * Issue a certificate for a role. Every certificate may authenticate a client; core and gate certificates
 * also serve TLS and carry SANs. The role is the subject's OU, the name its CN.
 */
export function issueCertificate(ca: Pick<CertifiedKey, 'certPem' | 'keyPem'>, options: IssueOptions): CertifiedKey {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = generateKeys();
  const cert = forge.pki.createCertificate();
  const serial = newSerial();
  const isServer = options.role === 'core' || options.role === 'gate';
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial;
  cert.validity.notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  cert.validity.notAfter = options.notAfter ?? new Date(Date.now() + (options.validityDays ?? 825) * 86_400_000);
  cert.setSubject([
    { name: 'commonName', value: options.name },
    { name: 'organizationalUnitName', value: options.role },
    { name: 'organizationName', value: ORGANIZATION },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = (options.sans ?? []).map((san) =>
    /^[\d.]+$/.test(san) || san.includes(':') ? { type: 7, ip: san } : { type: 2, value: san },
  );
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true, serverAuth: isServer },
    ...(altNames.length ? [{ name: 'subjectAltName', altNames }] : []),
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey), serial };
}

const subjectField = (subject: string, field: string): string | undefined =>
  subject
    .split('\n')
    .map((line) => line.split('='))
    .find(([k]) => k === field)?.[1];

/** Role and name of a peer certificate (from tls `getPeerCertificate()` or an X509Certificate), or null. */
export function identityOf(cert: { subject: string | Record<string, unknown>; serialNumber: string } | X509Certificate): Identity | null {
  let role: string | undefined;
  let name: string | undefined;
  if (typeof cert.subject === 'string') {
    role = subjectField(cert.subject, 'OU');
    name = subjectField(cert.subject, 'CN');
  } else {
    role = cert.subject.OU as string | undefined;
    name = cert.subject.CN as string | undefined;
  }
  if (!role || !name || !roles.includes(role as Role)) return null;
  return { role: role as Role, name, serial: cert.serialNumber.toLowerCase().replace(/^0+/, '') };
}

/** Normalise a serial for comparison (hex, lower case, no leading zeros). */
export const normalizeSerial = (serial: string): string => serial.toLowerCase().replace(/^0+/, '');

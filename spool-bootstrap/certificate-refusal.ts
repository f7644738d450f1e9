import type { PeerCertificate } from 'node:tls';

/** Who a certificate names, for a log line: role, name and serial, or what little there is. */
export function describeCertificate(cert: PeerCertificate | null | undefined): string {
  if (!cert || !cert.subject) return 'no certificate';
  const field = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value.join('+') : value);
  const role = field(cert.subject.OU);
  const name = field(cert.subject.CN);
  return `certificate ${role ? `${role} ` : ''}"${name ?? '(no name)'}" (serial ${cert.serialNumber?.toLowerCase() ?? '?'})`;
}

/** OpenSSL's verification codes that all mean: not signed by the CA this listener trusts. */
const UNKNOWN_ISSUER = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
]);

/**
 * Why a client certificate that failed TLS verification was refused, in words an operator can act on.
 * `code` is the verification error Node reports (`TLSSocket.authorizationError`).
 */
export function verificationRefusal(cert: PeerCertificate | null | undefined, code: string | Error | undefined): string {
  const reason = typeof code === 'string' ? code : (code?.message ?? 'unknown');
  if (!cert || !cert.subject) return 'no client certificate presented';
  const who = describeCertificate(cert);
  if (reason === 'CERT_HAS_EXPIRED') return `${who} expired on ${cert.valid_to}`;
  if (reason === 'CERT_NOT_YET_VALID') return `${who} is not valid before ${cert.valid_from}`;
  if (UNKNOWN_ISSUER.has(reason)) {
    const issuer = cert.issuer?.CN ? `"${cert.issuer.CN}"` : 'another authority';
    return `${who} is not issued by this spool's CA (issuer ${issuer})`;
  }
  return `${who} failed verification (${reason})`;
}

/** Why a TLS handshake failed before any certificate could be checked, from the error Node reports. */
export function handshakeFailure(error: Error & { code?: string }, handshakeTimeoutMs: number): string {
  if (error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return `TLS handshake not finished within ${handshakeTimeoutMs} ms`;
  if (/alert unknown ca|alert bad certificate|certificate unknown/i.test(error.message)) {
    return `the client does not trust this server's certificate (${error.message.trim()}): it holds another spool's CA?`;
  }
  if (/wrong version number|http request/i.test(error.message)) return `not a TLS client (${error.message.trim()})`;
  if (error.code === 'ECONNRESET' || /socket hang up/i.test(error.message)) return 'the client closed the connection during the TLS handshake';
  return `TLS handshake failed: ${error.message}`;
}

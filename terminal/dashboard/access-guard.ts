import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * Who may use the dashboard's local server: whoever holds the token printed when it started. The server
 * listens on 127.0.0.1, where every local user and every web page the browser runs can reach it, so each
 * request must prove itself:
 *
 * - Host must be 127.0.0.1:PORT or localhost:PORT. A page of another site whose name an attacker points
 *   at 127.0.0.1 (DNS rebinding) sends its own name as Host and is refused.
 * - The token: in the URL (`?token=`, as printed) or in the cookie set when that URL is first opened.
 *   The cookie is HttpOnly and SameSite=Strict, and named after the port, as cookies do not tell ports apart.
 * - The cookie is sent by the browser whoever asks, so a request that relies on it must come from the
 *   dashboard's own page: one the browser marks as coming from elsewhere (Sec-Fetch-Site cross-site, or
 *   same-site, which includes a page on another port of this machine; an Origin that is not ours) is
 *   refused. A request that carries the token itself knows the secret, wherever it comes from (the
 *   address opened from a terminal, or through the file `--open` hands the desktop's browser).
 */
export type Verdict = { allowed: true; tokenInUrl: boolean } | { allowed: false; reason: string };

const TOKEN_BYTES = 32;

export class AccessGuard {
  readonly token: string;
  readonly cookieName: string;
  private readonly hosts: ReadonlySet<string>;
  private readonly origins: ReadonlySet<string>;

  constructor(
    readonly port: number,
    token: string = randomBytes(TOKEN_BYTES).toString('base64url'),
  ) {
    this.token = token;
    this.cookieName = `swm-dashboard-${port}`;
    this.hosts = new Set([`127.0.0.1:${port}`, `localhost:${port}`]);
    this.origins = new Set([...this.hosts].map((h) => `http://${h}`));
  }

  /** The address to open, token included: print it to the user only. */
  url(host = '127.0.0.1'): string {
    return `http://${host}:${this.port}/?token=${this.token}`;
  }

  check(request: IncomingMessage): Verdict {
    const host = (request.headers.host ?? '').toLowerCase();
    if (!this.hosts.has(host)) return { allowed: false, reason: `Host "${host}" is not this dashboard (open ${[...this.hosts][0]})` };
    const fromUrl = new URL(request.url ?? '/', 'http://localhost').searchParams.get('token');
    if (fromUrl !== null) return this.matches(fromUrl) ? { allowed: true, tokenInUrl: true } : { allowed: false, reason: 'wrong token' };
    const fromCookie = cookieValue(request.headers.cookie, this.cookieName);
    if (fromCookie === null || !this.matches(fromCookie)) return { allowed: false, reason: 'no token: open the address swm dashboard printed, with its ?token=' };
    const site = request.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return { allowed: false, reason: `requests from other sites are refused (${site})` };
    const origin = request.headers.origin;
    if (origin !== undefined && !this.origins.has(origin.toLowerCase())) return { allowed: false, reason: 'requests from other origins are refused' };
    return { allowed: true, tokenInUrl: false };
  }

  /** Set-Cookie for a browser that came with the token in the URL; it is not readable by the page's script. */
  cookie(): string {
    return `${this.cookieName}=${this.token}; Path=/; HttpOnly; SameSite=Strict`;
  }

  private matches(candidate: string): boolean {
    const given = Buffer.from(candidate);
    const expected = Buffer.from(this.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { ClientBundle } from './certs.js';

/** A REST answer, read whole. */
export interface RestResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: <T = unknown>() => T;
}

export interface RestRequest {
  method?: string;
  headers?: Record<string, string | number>;
  body?: Buffer | string;
}

/**
 * One HTTPS request to the core's REST API on 127.0.0.1:`port`, presenting `bundle` (a bundle without
 * certificate and key presents none). A fresh connection each time, so nothing lingers after a test.
 */
export function rest(port: number, bundle: Partial<ClientBundle> & Pick<ClientBundle, 'caPem'>, path: string, options: RestRequest = {}): Promise<RestResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        ca: bundle.caPem,
        ...(bundle.certPem ? { cert: bundle.certPem, key: bundle.keyPem } : {}),
        servername: 'localhost',
        agent: false,
        timeout: 20_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode!, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
        });
        res.once('error', reject);
      },
    );
    req.once('timeout', () => req.destroy(new Error(`${options.method ?? 'GET'} ${path}: no answer in 20 s`)));
    req.once('error', reject);
    req.end(options.body);
  });
}

export interface FormPart {
  name: string;
  value: string | Buffer;
  /** Sent as a file part (what `curl -F name=@file` and generated clients do). */
  filename?: string;
}

/** A multipart/form-data body and its content type. */
export function multipart(parts: FormPart[]): { body: Buffer; contentType: string } {
  const boundary = `----skyport${randomBytes(12).toString('hex')}`;
  const pieces: Buffer[] = [];
  for (const part of parts) {
    const disposition = `form-data; name="${part.name}"${part.filename ? `; filename="${part.filename}"` : ''}`;
    const type = part.filename ? 'Content-Type: application/octet-stream\r\n' : '';
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n${type}\r\n`), Buffer.from(part.value), Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(pieces), contentType: `multipart/form-data; boundary=${boundary}` };
}

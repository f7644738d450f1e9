import { createHash } from 'node:crypto';
import type { TerminalClient } from '../../terminal-protocol/client.js';

export interface InlineInput {
  path: string;
  content: Buffer;
}

const CHUNK = 1024 * 1024;

/** Submit a script with inputs through the protocol, the way a terminal does: declare, upload, commit. */
export async function submitJob(client: TerminalClient, script: string, inputs: InlineInput[] = []): Promise<string> {
  const declared = inputs.map((f) => ({ path: f.path, size: f.content.length, sha256: createHash('sha256').update(f.content).digest('hex') }));
  const { id } = await client.call('job.submit', { script, ...(declared.length ? { inputs: declared } : {}) });
  if (!inputs.length) return id;
  for (const f of inputs) {
    for (let offset = 0; offset < f.content.length || offset === 0; offset += CHUNK) {
      const data = f.content.subarray(offset, offset + CHUNK).toString('base64');
      await client.call('job.input.write', { id, path: f.path, offset, data });
      if (f.content.length === 0) break;
    }
  }
  await client.call('job.input.commit', { id });
  return id;
}

/** Download a whole file of a job's results through the protocol. */
export async function readJobFile(client: TerminalClient, id: string, path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let offset = 0; ; ) {
    const r = await client.call('job.file.read', { id, path, offset, length: 4 * 1024 * 1024 });
    const data = Buffer.from(r.data, 'base64');
    chunks.push(data);
    offset += data.length;
    if (r.eof) return Buffer.concat(chunks);
  }
}

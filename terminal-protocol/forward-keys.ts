/**
 * Forward keys: the credentials of `swm forward`'s direct path. A terminal that can reach a job's head node
 * itself (the same host, the same network) gets from the core a key pair of its own for that node, good for one
 * thing only: a TCP connection to the job's port on the node's loopback. The core writes the public half to the
 * node's `~/.skyport/forward_keys` (sshd reads it as a second AuthorizedKeysFile: cloud-init configures it; the
 * local gate's nodes read it the same way) with OpenSSH's restrictions, and removes the job's lines when the job
 * ends. Nothing else of the node is reachable with it: no shell, no command, no other port, no reverse forward.
 */

/** The file, relative to the node user's home (a directory of its own: the partition's key file is never rewritten). */
export const FORWARD_KEYS_DIR = '.skyport';
export const FORWARD_KEYS_NAME = 'forward_keys';
export const FORWARD_KEYS_FILE = `${FORWARD_KEYS_DIR}/${FORWARD_KEYS_NAME}`;

/** The comment that tags a job's lines (removed together when it ends). */
const tagOf = (jobId: string): string => `skyport-forward:${jobId}`;

/**
 * One `authorized_keys` line: the key may open a connection to `host:port` and do nothing else (`restrict` turns
 * off every other right, `command` answers any session with a failure). Pure.
 */
export function forwardKeyLine(publicKey: string, jobId: string, host: string, port: number): string {
  const [type, blob] = publicKey.trim().split(/\s+/);
  if (!type || !blob) throw new Error('not an OpenSSH public key');
  return `restrict,port-forwarding,command="/bin/false",permitopen="${host}:${port}" ${type} ${blob} ${tagOf(jobId)}`;
}

/** A forward key as the node reads it: the key (type and base64 blob) and where it may connect. */
export interface ForwardKey {
  key: string;
  permitOpen: Array<{ host: string; port: number }>;
}

/**
 * The forward keys of a file's text: the lines that are restricted (`restrict`) and name where they may connect
 * (`permitopen`); any other line gives nothing (a line without restrictions is not a forward key). Pure.
 */
export function parseForwardKeys(text: string): ForwardKey[] {
  const keys: ForwardKey[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const parsed = splitOptions(line);
    if (!parsed) continue;
    const { options, rest } = parsed;
    if (!options.some((o) => o.name === 'restrict')) continue;
    const permitOpen = options
      .filter((o) => o.name === 'permitopen' && o.value !== undefined)
      .map((o) => /^(.+):(\d{1,5})$/.exec(o.value!))
      .filter((m): m is RegExpExecArray => m !== null && Number(m[2]) <= 65535)
      .map((m) => ({ host: m[1]!, port: Number(m[2]) }));
    const [type, blob] = rest.split(/\s+/);
    if (!type || !blob || permitOpen.length === 0) continue;
    keys.push({ key: `${type} ${blob}`, permitOpen });
  }
  return keys;
}

/** The text without the lines of a job (its forward keys, once it has ended). Pure. */
export function withoutJob(text: string, jobId: string): string {
  const tag = tagOf(jobId);
  return text
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.trim().endsWith(` ${tag}`))
    .map((line) => `${line}\n`)
    .join('');
}

/** A line's options (OpenSSH's syntax: comma-separated, `name` or `name="value"`, quotes holding commas) and the rest. */
function splitOptions(line: string): { options: Array<{ name: string; value?: string }>; rest: string } | null {
  // A line without options starts with the key's type.
  if (/^(ssh-|ecdsa-|sk-)/.test(line)) return { options: [], rest: line };
  const options: Array<{ name: string; value?: string }> = [];
  let i = 0;
  for (;;) {
    const name = /^[A-Za-z-]+/.exec(line.slice(i));
    if (!name) return null;
    i += name[0].length;
    let value: string | undefined;
    if (line[i] === '=') {
      if (line[i + 1] !== '"') return null;
      let j = i + 2;
      let text = '';
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === '\\' && line[j + 1] === '"') j++;
        text += line[j];
      }
      if (j >= line.length) return null;
      value = text;
      i = j + 1;
    }
    options.push({ name: name[0].toLowerCase(), ...(value !== undefined ? { value } : {}) });
    if (line[i] === ',') {
      i++;
      continue;
    }
    if (line[i] !== ' ' && line[i] !== '\t') return null;
    return { options, rest: line.slice(i).trim() };
  }
}

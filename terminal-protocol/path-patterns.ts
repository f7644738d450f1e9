/**
 * Glob patterns over relative, `/`-separated paths in a job's directory, one grammar for both sides of the
 * wire (the terminal's `input-files` and download selections, the core's `output-files`):
 * `*` and `?` stay within one path segment, `**` spans any number of segments, `[abc]`, `[a-z]` and
 * `[!abc]` match one character. A pattern also selects everything below a directory it matches, so
 * `out` and `out/*` both select `out/run1/result.csv`.
 */

export const hasGlobMagic = (pattern: string): boolean => /[*?[]/.test(pattern);

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function segmentToRegExp(segment: string): string {
  let out = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close === -1) {
        out += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      const negated = body.startsWith('!') || body.startsWith('^');
      if (negated) body = body.slice(1);
      out += `[${negated ? '^/' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = close;
    } else out += escapeRegExp(c);
  }
  return out;
}

/** `./a//b/` → `a/b`: the form paths are compared in. */
export const normalizeRelative = (path: string): string =>
  path
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');

export function globToRegExp(pattern: string): RegExp {
  const segments = normalizeRelative(pattern).split('/');
  let source = '';
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    if (segment === '**') source += last ? '.*' : '(?:[^/]+/)*';
    else source += segmentToRegExp(segment) + (last ? '' : '/');
  });
  return new RegExp(`^${source}$`);
}

/** True when the pattern matches the path or one of the directories it lies in. */
export function matchesGlob(path: string, pattern: string): boolean {
  const re = globToRegExp(pattern);
  const segments = normalizeRelative(path).split('/');
  for (let n = 1; n <= segments.length; n++) if (re.test(segments.slice(0, n).join('/'))) return true;
  return false;
}

export interface Selection<T> {
  selected: T[];
  /** Patterns that matched nothing: worth telling the user. */
  unmatched: string[];
}

/** The items whose path matches any pattern (all of them when there is no pattern). */
export function selectByGlobs<T extends { path: string }>(items: readonly T[], patterns: readonly string[]): Selection<T> {
  if (patterns.length === 0) return { selected: [...items], unmatched: [] };
  const hits = new Set<string>();
  const selected = items.filter((item) => {
    let any = false;
    for (const p of patterns) {
      if (matchesGlob(item.path, p)) {
        hits.add(p);
        any = true;
      }
    }
    return any;
  });
  return { selected, unmatched: patterns.filter((p) => !hits.has(p)) };
}

/** The directory part of a pattern before its first wildcard: where a walk for it starts (`data/*.csv` → `data`). */
export function globBase(pattern: string): string {
  const segments = normalizeRelative(pattern).split('/');
  const firstMagic = segments.findIndex(hasGlobMagic);
  return segments.slice(0, firstMagic === -1 ? segments.length : firstMagic).join('/');
}

/**
 * The runner's own directory inside a job's directory (its script, runner, pid and exit code live there,
 * core/jobs/node-layout.ts): no file the job declares may be there, or it would overwrite them.
 */
export const RUNNER_DIR = '.swm';
/** The longest name of one path segment, in bytes (Linux's NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;
/** The longest path, in bytes (Linux's PATH_MAX). */
export const MAX_PATH_BYTES = 4096;

/**
 * Why a path cannot name a file of a job's directory. `escape`: it leads out of the directory; `reserved`: it
 * lies in the runner's own `.swm/`; `malformed`: no file system would take it.
 */
export interface JobPathProblem {
  kind: 'escape' | 'reserved' | 'malformed';
  reason: string;
}

/**
 * Why `path` cannot name a file (or a pattern of files) in a job's directory, or null when it can. One rule for
 * every name a job gives: its inputs, its outputs, its stdin, stdout and stderr. Pure.
 */
export function jobPathProblem(path: string): JobPathProblem | null {
  if (path.includes('\0')) return { kind: 'malformed', reason: 'contains a NUL byte' };
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) return { kind: 'malformed', reason: `is longer than ${MAX_PATH_BYTES} bytes` };
  const long = path.split('/').find((segment) => Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES);
  if (long !== undefined) return { kind: 'malformed', reason: `has a name longer than ${MAX_SEGMENT_BYTES} bytes ("${long.slice(0, 32)}...")` };
  if (path.startsWith('/') || path.split('/').includes('..'))
    return { kind: 'escape', reason: 'must be a path inside the job directory (relative, no "..")' };
  const normal = normalizeRelative(path);
  if (normal === '') return { kind: 'malformed', reason: 'names the job directory itself, not a file in it' };
  if (normal.split('/')[0] === RUNNER_DIR) return { kind: 'reserved', reason: `lies in ${RUNNER_DIR}/, the runner's own directory` };
  return null;
}

/**
 * Patterns in `output-files` (and `input-files`, which the terminal expands): paths relative to the job
 * directory where `*` and `?` match within one path segment, `**` any number of segments, and `[abc]`,
 * `[a-z]`, `[!abc]` one character. A pattern naming a directory takes everything below it. The same
 * grammar as the terminal's selections (terminal/glob.ts), which the core may not import. Pure.
 */

export const hasMagic = (pattern: string): boolean => /[*?[]/.test(pattern);

/** `./a//b/` → `a/b`. */
export const normalize = (path: string): string =>
  path
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function segmentSource(segment: string): string {
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

export function patternRegExp(pattern: string): RegExp {
  const segments = normalize(pattern).split('/');
  let source = '';
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    if (segment === '**') source += last ? '.*' : '(?:[^/]+/)*';
    else source += segmentSource(segment) + (last ? '' : '/');
  });
  return new RegExp(`^${source}$`);
}

/** True when the pattern matches the path or a directory it lies in. */
export function matches(path: string, pattern: RegExp): boolean {
  const segments = normalize(path).split('/');
  for (let n = 1; n <= segments.length; n++) if (pattern.test(segments.slice(0, n).join('/'))) return true;
  return false;
}

/** The fixed directory a pattern's matches lie under (`out/*.csv` → `out`; '' for the job directory). */
export function fixedBase(pattern: string): string {
  const segments = normalize(pattern).split('/');
  const first = segments.findIndex(hasMagic);
  return segments.slice(0, first === -1 ? segments.length : first).join('/');
}

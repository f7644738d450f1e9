/**
 * What one text frame may cost before it is parsed. JSON.parse, the schema check and everything after them
 * run on the event loop, and their cost grows with the number of values and the nesting, not with the
 * bytes: 10 MB of `[[[[…` or of `{},{},…` takes seconds to parse, during which no other connection is
 * served. A single linear pass over the raw bytes, which stops as soon as a limit is crossed, refuses such
 * frames in microseconds; what passes is bounded in depth (so nothing downstream recurses deeply) and in
 * values (so parsing and validation stay proportional to what a real message of the protocol carries).
 */
export interface FrameBudget {
  /** Deepest nesting of arrays and objects. Real messages nest fewer than ten levels. */
  maxDepth: number;
  /**
   * Most values in one message: every array element and object member at every level. The largest real
   * message, a job.submit declaring 100 000 input files, has about 400 000.
   */
  maxValues: number;
}

/** The budget of every peer, terminals and gates alike. */
export const FRAME_BUDGET: FrameBudget = { maxDepth: 64, maxValues: 500_000 };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** What each byte means to the scan; most bytes (digits, letters, `:`, whitespace) mean nothing. */
const OTHER = 0;
const STRING = 1;
const OPEN = 2;
const CLOSE = 3;
const COMMA = 4;
const WHITESPACE = 5;
const KIND = new Uint8Array(256);
KIND[QUOTE] = STRING;
KIND[0x5b] = OPEN; // [
KIND[0x7b] = OPEN; // {
KIND[0x5d] = CLOSE; // ]
KIND[0x7d] = CLOSE; // }
KIND[0x2c] = COMMA;
for (const byte of [0x20, 0x09, 0x0a, 0x0d]) KIND[byte] = WHITESPACE;

/** Stretches of a string scanned byte by byte before jumping natively to its next quote. */
const SHORT_STRETCH = 64;

/**
 * Index of the quote that closes the string opened at `open`, or the frame's length if none does. Short
 * strings are walked byte by byte; in long ones the next quote is found natively (a 16 MB job script costs
 * a memchr, not a JavaScript loop), and the backslashes right before it say whether it is escaped.
 */
function endOfString(frame: Uint8Array, open: number): number {
  const length = frame.length;
  let at = open + 1;
  for (;;) {
    const stretch = Math.min(length, at + SHORT_STRETCH);
    for (; at < stretch; at++) {
      const byte = frame[at];
      if (byte === QUOTE) return at;
      if (byte === BACKSLASH) at++;
    }
    if (at >= length) return length;
    // `at` starts a character (never the byte after a lone backslash), so backslashes from there pair up.
    const quote = frame.indexOf(QUOTE, at);
    if (quote < 0) return length;
    let backslashes = 0;
    for (let k = quote - 1; k >= at && frame[k] === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return quote;
    at = quote + 1;
  }
}

/**
 * Why `frame` (UTF-8 JSON text) exceeds `budget`, or null when it does not. Multi-byte UTF-8 sequences
 * never contain ASCII bytes, so brackets and commas are found in the bytes without decoding them. The
 * counts are exact for valid JSON; for invalid JSON they are whatever the bytes suggest, and JSON.parse
 * then reports the real error.
 */
export function exceedsBudget(frame: Uint8Array, budget: FrameBudget): string | null {
  const { maxDepth, maxValues } = budget;
  const length = frame.length;
  let depth = 0;
  let values = 1;
  for (let i = 0; i < length; i++) {
    const kind = KIND[frame[i]!];
    if (kind === OTHER || kind === WHITESPACE) continue;
    if (kind === STRING) {
      i = endOfString(frame, i);
    } else if (kind === OPEN) {
      if (++depth > maxDepth) return `message nests deeper than ${maxDepth} levels`;
      // A container's first value has no comma before it: count it unless the container is empty.
      let next = i + 1;
      while (next < length && KIND[frame[next]!] === WHITESPACE) next++;
      if (next < length && KIND[frame[next]!] !== CLOSE && ++values > maxValues) return `message has more than ${maxValues} values`;
    } else if (kind === CLOSE) {
      depth--;
    } else if (++values > maxValues) {
      return `message has more than ${maxValues} values`;
    }
  }
  return null;
}

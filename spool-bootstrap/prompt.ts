import { userInfo } from 'node:os';
import { createInterface } from 'node:readline/promises';
import { DEFAULT_CORE_HOST, DEFAULT_CORE_PORT, DEFAULT_REMOTE_LOCATION } from './defaults.js';
import { defaultHomeDir, defaultSpoolDir } from './paths.js';
import { USER_NAME_PATTERN } from './users.js';

/** Everything swm-setup needs to create a spool. */
export interface SetupAnswers {
  spoolDir: string;
  homeDir: string;
  user: string;
  uid: number;
  host: string;
  port: number;
  location: string;
  /** Recreate an existing spool. */
  force: boolean;
}
export type KnownAnswers = Partial<SetupAnswers>;

/** A value given on the command line or in the environment is malformed (the CLI exits 2). */
export class UsageError extends Error {
  override name = 'UsageError';
}

type Parse<T> = (text: string) => T;

export const parseUser: Parse<string> = (text) => {
  if (!USER_NAME_PATTERN.test(text)) throw new UsageError(`invalid user name "${text}": letters, digits, "_", "." or "-", starting with a letter or "_"`);
  return text;
};
export const parseUid: Parse<number> = (text) => {
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`invalid uid "${text}": a non-negative integer`);
  return Number(text.trim());
};
export const parsePort: Parse<number> = (text) => {
  const port = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(port >= 1 && port <= 65535)) throw new UsageError(`invalid port "${text}": 1 to 65535`);
  return port;
};
export const parseName: Parse<string> = (text) => {
  if (!/^[A-Za-z0-9][A-Za-z0-9.:-]*$/.test(text.trim())) throw new UsageError(`invalid name "${text}"`);
  return text.trim();
};
export const parseYesNo: Parse<boolean> = (text) => {
  const answer = text.trim().toLowerCase();
  if (['y', 'yes', 'true', '1'].includes(answer)) return true;
  if (['n', 'no', 'false', '0'].includes(answer)) return false;
  throw new UsageError(`expected yes or no, got "${text}"`);
};

const parsed = <T>(text: string | undefined, parse: Parse<T>): T | undefined =>
  text === undefined || text === '' ? undefined : parse(text);

/** Answers the environment gives (the release container passes the original SKYPORT_* variables). */
export function answersFromEnv(env: NodeJS.ProcessEnv): KnownAnswers {
  return {
    spoolDir: env.SWM_SPOOL || undefined,
    homeDir: env.SWM_HOME || undefined,
    user: parsed(env.SKYPORT_USER, parseUser),
    uid: parsed(env.SKYPORT_USER_ID, parseUid),
    location: parsed(env.SKYPORT_REMOTE_LOCATION, parseName),
    force: parsed(env.SKYPORT_RECREATE, parseYesNo),
  };
}

/** Later layers override earlier ones; an undefined value overrides nothing. */
export function mergeAnswers(...layers: KnownAnswers[]): KnownAnswers {
  const merged: Record<string, unknown> = {};
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) if (value !== undefined) merged[key] = value;
  }
  return merged as KnownAnswers;
}

/** What an unanswered question takes. */
export function defaultAnswers(env: NodeJS.ProcessEnv): SetupAnswers {
  return {
    spoolDir: defaultSpoolDir(),
    homeDir: defaultHomeDir(),
    user: env.USER || userInfo().username,
    uid: process.getuid?.() ?? 0,
    host: DEFAULT_CORE_HOST,
    port: DEFAULT_CORE_PORT,
    location: DEFAULT_REMOTE_LOCATION,
    force: false,
  };
}

export const completeWithDefaults = (known: KnownAnswers, defaults: SetupAnswers): SetupAnswers => ({
  ...defaults,
  ...(mergeAnswers(known) as Partial<SetupAnswers>),
});

export interface PromptIo {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
}

/**
 * Ask, on a terminal, for what neither the environment nor the flags said: first whether to recreate an
 * existing spool (nothing else matters if not), then the original prompt's questions. A malformed
 * answer is asked again; an empty one takes the default shown in brackets.
 */
export async function askForMissing(known: KnownAnswers, defaults: SetupAnswers, spoolExists: boolean, io: PromptIo): Promise<SetupAnswers> {
  const rl = createInterface({ input: io.input, output: io.output, terminal: false });
  // End of input (Ctrl-D, a closed pipe) must end the prompt, not leave a question pending forever.
  const closed = new Promise<never>((_, reject) => rl.once('close', () => reject(new UsageError('input ended before every question was answered'))));
  closed.catch(() => undefined);
  const ask = async <T>(question: string, fallback: T, shown: string, parse: Parse<T>): Promise<T> => {
    for (;;) {
      const text = (await Promise.race([rl.question(`${question} [${shown}]: `), closed])).trim();
      if (text === '') return fallback;
      try {
        return parse(text);
      } catch (error) {
        io.output.write(`${(error as Error).message}\n`);
      }
    }
  };
  try {
    const answers = completeWithDefaults(known, defaults);
    if (spoolExists && known.force === undefined) {
      answers.force = await ask('Recreate the existing spool?', false, 'y/N', parseYesNo);
      if (!answers.force) return answers;
    }
    if (known.user === undefined) answers.user = await ask('User name', defaults.user, defaults.user, parseUser);
    if (known.uid === undefined) answers.uid = await ask('User id (uid)', defaults.uid, String(defaults.uid), parseUid);
    if (known.location === undefined) answers.location = await ask('Remote location', defaults.location, defaults.location, parseName);
    return answers;
  } finally {
    rl.close();
  }
}

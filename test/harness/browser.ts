import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';

/**
 * A real headless browser for tests: the system's Chromium (Debian's package, which
 * scripts/install-system-deps.sh installs as root), driven by puppeteer-core, which never downloads a
 * browser of its own. CHROMIUM_PATH names another binary.
 */
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome-stable', '/usr/bin/google-chrome'];

/** The Chromium binary to drive, or null when this machine has none. */
export function chromiumPath(): string | null {
  const chosen = process.env.CHROMIUM_PATH;
  if (chosen) return existsSync(chosen) ? chosen : null;
  return CANDIDATES.find((path) => existsSync(path)) ?? null;
}

export interface HeadlessBrowser {
  browser: Browser;
  /** Close the browser and remove its profile. */
  close: () => Promise<void>;
}

/** Headless Chromium with a throw-away profile. Root cannot use Chromium's sandbox, so it runs without. */
export async function launchHeadless(executablePath: string): Promise<HeadlessBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'skyport-chromium-'));
  const args = ['--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--no-default-browser-check', '--disable-extensions'];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  try {
    const browser = await puppeteer.launch({ executablePath, headless: true, args, userDataDir: profile, timeout: 60_000 });
    return {
      browser,
      close: async () => {
        await browser.close().catch(() => undefined);
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(profile, { recursive: true, force: true });
    throw error;
  }
}

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TEST_IMAGE = 'localhost/skyport-test:2';
const APPLETS = ['sh', 'echo', 'cat', 'ls', 'wc', 'sleep', 'head', 'true', 'false', 'mkdir', 'cp', 'env', 'id', 'hostname', 'tr', 'sha256sum', 'nc'];

/** Whether podman can run containers here (installed and configured by scripts/install-system-deps.sh). */
export const podmanWorks = (): boolean =>
  spawnSync('podman', ['--version'], { stdio: 'ignore' }).status === 0 && existsSync('/bin/busybox');

/**
 * A tiny local image (busybox and its applets), made without any registry: nothing is pulled in tests.
 * Built once per machine; returns its name.
 */
export function ensureTestImage(): string {
  if (spawnSync('podman', ['image', 'exists', TEST_IMAGE]).status === 0) return TEST_IMAGE;
  const dir = mkdtempSync(join(tmpdir(), 'skyport-image-'));
  try {
    const bin = join(dir, 'rootfs', 'bin');
    mkdirSync(bin, { recursive: true });
    copyFileSync('/bin/busybox', join(bin, 'busybox'));
    for (const applet of APPLETS) symlinkSync('busybox', join(bin, applet));
    execFileSync('tar', ['-C', join(dir, 'rootfs'), '-cf', join(dir, 'image.tar'), '.']);
    execFileSync('podman', ['import', '--quiet', join(dir, 'image.tar'), TEST_IMAGE], { stdio: 'ignore' });
    return TEST_IMAGE;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

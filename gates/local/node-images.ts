import { execFile, spawn } from 'node:child_process';
import { chown, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { NodeAccount } from './node-accounts.js';

const run = promisify(execFile);

const podmanMissing = async (): Promise<boolean> => run('podman', ['--version']).then(() => false, () => true);

/**
 * Puts a partition's container images into its account's own (rootless) image store, before the
 * partition is reported up. Nodes run containers as their account, whose store starts empty, and a node's
 * network is its own loopback, so they cannot pull: the gate takes each image from this machine's store
 * (pulling it there first when missing), saves it, and loads it as the account. An image that cannot be
 * had fails the partition with the reason.
 */
export async function seedImages(images: readonly string[], account: NodeAccount, env: NodeJS.ProcessEnv, workDir: string, logger: Logger): Promise<void> {
  if (images.length === 0 || (await podmanMissing())) return;
  for (const image of images) {
    const archive = join(workDir, `.image-${images.indexOf(image)}.tar`);
    try {
      // What a gate killed in the middle of a save left behind (podman will not write over it).
      await rm(archive, { force: true });
      if ((await run('podman', ['image', 'exists', image]).then(() => true, () => false)) === false) await run('podman', ['pull', '--quiet', image]);
      await run('podman', ['save', '--quiet', '--output', archive, image]);
      await chown(archive, account.uid, account.gid);
      await asAccount(account, env, ['podman', 'load', '--quiet', '--input', archive]);
      logger.info({ image }, 'container image on the partition');
    } catch (error) {
      logger.warn({ image, err: (error as Error).message }, 'container image could not be put on the partition');
      throw new Error(`container image ${image} could not be put on the partition: ${(error as Error).message}`);
    } finally {
      await rm(archive, { force: true });
    }
  }
}

function asAccount(account: NodeAccount, env: NodeJS.ProcessEnv, argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { uid: account.uid, gid: account.gid, env, cwd: env.HOME, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2_000)));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr.trim()}`))));
  });
}

import type { Image } from '../../terminal-protocol/common.js';
import type { ArmClients } from './arm-clients.js';
import { urnOf, type DefaultImage } from './image-reference.js';

/** Marketplace versions (`24.04.202502210`) compared part by part as numbers, newest first. */
export function newestFirst(versions: string[]): string[] {
  const parts = (v: string): number[] => v.split('.').map((p) => Number.parseInt(p, 10) || 0);
  return [...versions].sort((a, b) => {
    const pa = parts(a);
    const pb = parts(b);
    for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
      const d = (pb[i] ?? 0) - (pa[i] ?? 0);
      if (d !== 0) return d;
    }
    return 0;
  });
}

/** The configured marketplace image's versions in the location, newest first, as URNs partition requests accept. */
export async function listImages(arm: ArmClients, location: string, image: DefaultImage, remote: string): Promise<Image[]> {
  const versions = await arm.compute.virtualMachineImages.list(location, image.publisher, image.offer, image.sku);
  return newestFirst(versions.map((v) => v.name).filter((v): v is string => typeof v === 'string')).map((version, i) => ({
    id: urnOf(image, version),
    name: `${image.offer} ${image.sku} ${version}`,
    remote,
    kind: 'cloud' as const,
    ...(i === 0 ? { comment: 'newest' } : {}),
  }));
}

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

/** What a VM size must offer to boot an image, and the purchase plan a VM of it must name. */
export interface ImageTraits {
  /** `x64` or `Arm64`. */
  architecture: string;
  /** `V1` or `V2`. */
  hyperVGeneration: string;
  plan: { name: string; product: string; publisher: string } | null;
}

/**
 * The traits of a marketplace image version (`latest`: the newest), or null when it has none to read (an
 * image resource id: gallery and managed images are the operator's to match).
 */
export async function imageTraits(arm: ArmClients, location: string, image: { publisher?: string; offer?: string; sku?: string; version?: string; id?: string }): Promise<ImageTraits | null> {
  const { publisher, offer, sku } = image;
  if (image.id || !publisher || !offer || !sku) return null;
  let version = image.version ?? 'latest';
  if (version === 'latest') {
    const versions = await arm.compute.virtualMachineImages.list(location, publisher, offer, sku);
    const newest = newestFirst(versions.map((v) => v.name).filter((v): v is string => typeof v === 'string'))[0];
    if (!newest) throw new Error(`marketplace image ${publisher}:${offer}:${sku} has no version in ${location}`);
    version = newest;
  }
  const found = await arm.compute.virtualMachineImages.get(location, publisher, offer, sku, version);
  const plan = found.plan?.name && found.plan.product && found.plan.publisher ? { name: found.plan.name, product: found.plan.product, publisher: found.plan.publisher } : null;
  return { architecture: found.architecture ?? 'x64', hyperVGeneration: found.hyperVGeneration ?? 'V1', plan };
}

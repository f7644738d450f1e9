import type { ImageReference } from '@azure/arm-compute';

/** The marketplace image used when a job names none. */
export interface DefaultImage {
  publisher: string;
  offer: string;
  sku: string;
  /** A custom image (gallery or managed image id) used instead of the marketplace one, when configured. */
  id?: string;
}

export interface ImageChoice {
  vmImage: ImageReference;
  /** The container image to pull at boot, when the job's image is one. */
  containerImage: string | null;
}

const CONTAINER_REFERENCE = /^[\w./:@-]+$/;

/** A marketplace URN: `publisher:offer:sku:version`. */
export const urnOf = (image: { publisher: string; offer: string; sku: string }, version: string): string =>
  `${image.publisher}:${image.offer}:${image.sku}:${version}`;

/**
 * What a partition request's `image` means on Azure: a marketplace URN (`publisher:offer:sku:version`,
 * as image.list returns them) or an image resource id (`/subscriptions/...`) is the VM's image; any
 * other reference is a container image, pulled at boot on the default VM image.
 */
export function chooseImage(image: string | null, defaults: DefaultImage): ImageChoice {
  const byDefault: ImageReference = defaults.id ? { id: defaults.id } : { publisher: defaults.publisher, offer: defaults.offer, sku: defaults.sku, version: 'latest' };
  if (image === null || image === '') return { vmImage: byDefault, containerImage: null };
  if (image.startsWith('/subscriptions/')) return { vmImage: { id: image }, containerImage: null };
  const parts = image.split(':');
  if (parts.length === 4 && !image.includes('/') && parts.every((p) => p.length > 0)) {
    const [publisher, offer, sku, version] = parts as [string, string, string, string];
    return { vmImage: { publisher, offer, sku, version }, containerImage: null };
  }
  if (!CONTAINER_REFERENCE.test(image)) throw new Error(`image "${image}" is neither a marketplace URN, an image id nor a container image reference`);
  return { vmImage: byDefault, containerImage: image };
}

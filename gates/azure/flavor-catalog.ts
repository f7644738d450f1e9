import type { Flavor } from '../../terminal-protocol/common.js';
import type { ArmClients } from './arm-clients.js';
import type { RetailPrice, RetailPrices } from './retail-prices.js';

/** A VM size of the location (virtualMachineSizes.list). */
export interface SizeRecord {
  name?: string;
  numberOfCores?: number;
  memoryInMB?: number;
  resourceDiskSizeInMB?: number;
}

/** A resource SKU record (resourceSkus.list): one per SKU and location. */
export interface SkuRecord {
  resourceType?: string;
  name?: string;
  locations?: string[];
  capabilities?: { name?: string; value?: string }[];
  restrictions?: { type?: string; values?: string[] }[];
}

const same = (a: string | undefined, b: string): boolean => a !== undefined && a.toLowerCase() === b.toLowerCase();

/** The SKU record of a size *in this location*: the SKU list has one record per location, in no useful order. */
const skuIn = (skus: SkuRecord[], size: string, location: string): SkuRecord | undefined =>
  skus.find((s) => same(s.resourceType, 'virtualMachines') && same(s.name, size) && (s.locations ?? []).some((l) => same(l, location)));

/** Whether the subscription may not create this size in this location. */
export const restrictedIn = (sku: SkuRecord | undefined, location: string): boolean =>
  (sku?.restrictions ?? []).some((r) => r.type === 'Location' && (r.values ?? []).some((v) => same(v, location)));

const capability = (sku: SkuRecord | undefined, name: string): string | undefined => sku?.capabilities?.find((c) => same(c.name, name))?.value;

/**
 * Why a size cannot boot an image (its CPU architecture, or a Hyper-V generation the size does not offer),
 * or null when it can. Sizes whose SKU record says nothing are taken to be x64 of both generations.
 */
export function cannotBoot(size: string, sku: SkuRecord | undefined, image: { architecture: string; hyperVGeneration: string }): string | null {
  const architecture = capability(sku, 'CpuArchitectureType') ?? 'x64';
  if (architecture.toLowerCase() !== image.architecture.toLowerCase())
    return `VM size ${size} (${architecture}) cannot boot an image built for ${image.architecture}`;
  const generations = (capability(sku, 'HyperVGenerations') ?? 'V1,V2').split(',').map((g) => g.trim().toUpperCase());
  if (!generations.includes(image.hyperVGeneration.toUpperCase()))
    return `VM size ${size} (Hyper-V generation ${generations.join('/')}) cannot boot a generation ${image.hyperVGeneration} image`;
  return null;
}

const gpusOf = (sku: SkuRecord | undefined): number => {
  const value = Number(sku?.capabilities?.find((c) => same(c.name, 'GPUs'))?.value ?? 0);
  return Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
};

/** The cheapest hourly Linux Consumption meter of a size in a location, Spot meters or not (never Low Priority). */
function cheapestHourlyLinux(prices: RetailPrice[], size: string, location: string, spot: boolean): RetailPrice | undefined {
  return prices
    .filter((p) => {
      const meter = `${p.skuName} ${p.meterName}`;
      return (
        same(p.armSkuName, size) &&
        same(p.armRegionName, location) &&
        p.type === 'Consumption' &&
        p.unitOfMeasure === '1 Hour' &&
        !/windows/i.test(p.productName) &&
        !/low priority/i.test(meter) &&
        /spot/i.test(meter) === spot
      );
    })
    .sort((a, b) => a.retailPrice - b.retailPrice)[0];
}

/** The hourly pay-as-you-go Linux price of a size in a location (not Windows, not Spot, not Low Priority). */
export const hourlyLinuxPrice = (prices: RetailPrice[], size: string, location: string): RetailPrice | undefined =>
  cheapestHourlyLinux(prices, size, location, false);

/** The hourly Spot price of a size in a location (Linux, Consumption, the Spot meter), or undefined. */
export const hourlySpotPrice = (prices: RetailPrice[], size: string, location: string): RetailPrice | undefined =>
  cheapestHourlyLinux(prices, size, location, true);

/**
 * Where an ephemeral OS disk of `osDiskGiB` goes on a size (its SKU's `EphemeralOSDiskSupported`, then the cache
 * disk if it has room, else the resource disk), or null when it does not fit.
 */
export function ephemeralPlacementOf(sku: SkuRecord | undefined, osDiskGiB: number): 'CacheDisk' | 'ResourceDisk' | null {
  if (!/^true$/i.test(capability(sku, 'EphemeralOSDiskSupported') ?? '')) return null;
  const cacheGiB = Number(capability(sku, 'CachedDiskBytes') ?? 0) / 1024 ** 3;
  if (cacheGiB >= osDiskGiB) return 'CacheDisk';
  const resourceGiB = Number(capability(sku, 'MaxResourceVolumeMB') ?? 0) / 1024;
  return resourceGiB >= osDiskGiB ? 'ResourceDisk' : null;
}

/**
 * Flavors: the location's sizes (less those the subscription may not use there), with GPU counts from
 * the SKU record of that location and the hourly price; a size without a price keeps no price.
 */
export function joinFlavors(
  remote: string,
  location: string,
  sizes: SizeRecord[],
  skus: SkuRecord[],
  prices: RetailPrice[],
  image?: { architecture: string; hyperVGeneration: string } | null,
): Flavor[] {
  return sizes
    .filter((size): size is SizeRecord & { name: string } => typeof size.name === 'string')
    .filter((size) => !restrictedIn(skuIn(skus, size.name, location), location))
    .filter((size) => !image || cannotBoot(size.name, skuIn(skus, size.name, location), image) === null)
    .map((size) => {
      const price = hourlyLinuxPrice(prices, size.name, location);
      const spot = hourlySpotPrice(prices, size.name, location);
      return {
        name: size.name,
        remote,
        cpus: size.numberOfCores ?? 0,
        gpus: gpusOf(skuIn(skus, size.name, location)),
        memMiB: size.memoryInMB ?? 0,
        diskMiB: size.resourceDiskSizeInMB ?? 0,
        ...(price ? { pricePerHour: price.retailPrice } : {}),
        ...(spot ? { spotPrice: spot.retailPrice } : {}),
        ...(price || spot ? { currency: (price ?? spot)!.currencyCode } : {}),
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

interface Cached<T> {
  at: number;
  value: Promise<T>;
}

const collect = async <T>(items: AsyncIterable<T>): Promise<T[]> => {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
};

/**
 * The location's flavors, cached for `cacheMs`. Sizes and SKUs (two quick calls, needed to accept a
 * partition) are cached apart from prices (many pages, needed only to list flavors).
 */
export class FlavorCatalog {
  private readonly sizes = new Map<string, Cached<{ sizes: SizeRecord[]; skus: SkuRecord[] }>>();
  private prices?: Cached<RetailPrice[]>;

  constructor(
    private readonly arm: ArmClients,
    private readonly location: string,
    private readonly remote: string,
    private readonly retailPrices: RetailPrices,
    private readonly cacheMs: number,
  ) {}

  /** The location's sizes that can boot `image` (the default image's traits), priced. */
  async flavors(image?: { architecture: string; hyperVGeneration: string } | null): Promise<Flavor[]> {
    const [{ sizes, skus }, prices] = await Promise.all([this.sizesAndSkus(this.location), this.locationPrices()]);
    return joinFlavors(this.remote, this.location, sizes, skus, prices, image);
  }

  /** Why a size cannot be used in a location (the gate's by default; for `image`, when its traits are known), or null when it can. */
  async unavailable(size: string, image?: { architecture: string; hyperVGeneration: string } | null, location = this.location): Promise<string | null> {
    const { sizes, skus } = await this.sizesAndSkus(location);
    if (!sizes.some((s) => same(s.name, size))) return `VM size ${size} is not offered in ${location}`;
    const sku = skuIn(skus, size, location);
    if (restrictedIn(sku, location)) return `VM size ${size} is not available to this subscription in ${location}`;
    return image ? cannotBoot(size, sku, image) : null;
  }

  /** Where an ephemeral OS disk of `osDiskGiB` goes on a size in a location, or null (see ephemeralPlacementOf). */
  async ephemeralPlacement(size: string, location: string, osDiskGiB: number): Promise<'CacheDisk' | 'ResourceDisk' | null> {
    const { skus } = await this.sizesAndSkus(location);
    return ephemeralPlacementOf(skuIn(skus, size, location), osDiskGiB);
  }

  private fresh<T>(entry: Cached<T> | undefined): entry is Cached<T> {
    return entry !== undefined && Date.now() - entry.at < this.cacheMs;
  }

  private sizesAndSkus(location: string): Promise<{ sizes: SizeRecord[]; skus: SkuRecord[] }> {
    const key = location.toLowerCase();
    const cached = this.sizes.get(key);
    if (this.fresh(cached)) return cached.value;
    const value = Promise.all([
      collect(this.arm.compute.virtualMachineSizes.list(location)),
      collect(this.arm.compute.resourceSkus.list({ filter: `location eq '${location}'` })),
    ]).then(([sizes, skus]) => ({ sizes, skus }));
    this.sizes.set(key, { at: Date.now(), value });
    // A failed lookup is not cached.
    value.catch(() => this.sizes.delete(key));
    return value;
  }

  private locationPrices(): Promise<RetailPrice[]> {
    if (!this.fresh(this.prices)) {
      const value = this.retailPrices.virtualMachinePrices(this.location);
      this.prices = { at: Date.now(), value };
      value.catch(() => (this.prices = undefined));
    }
    return this.prices!.value;
  }
}

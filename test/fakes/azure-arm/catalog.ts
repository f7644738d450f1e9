/**
 * What the fake cloud sells: VM sizes per location, resource SKUs (with GPU capabilities and
 * restrictions), marketplace images and retail prices. Tests replace any part of it.
 */
export interface VmSizeEntry {
  name: string;
  numberOfCores: number;
  memoryInMB: number;
  osDiskSizeInMB: number;
  resourceDiskSizeInMB: number;
  maxDataDiskCount: number;
  locations: string[];
  /** The SKU's `CpuArchitectureType` capability; x64 when absent. */
  architecture?: 'x64' | 'Arm64';
  /** The SKU's `HyperVGenerations` capability; `V1,V2` when absent. */
  hyperVGenerations?: string;
  /** Availability zones the size is offered in, per location; `1`, `2`, `3` when absent. */
  zones?: string[];
  /**
   * The SKU's `EphemeralOSDiskSupported` capability, with the local space an ephemeral OS disk may use:
   * the cache disk (`CachedDiskBytes`) or, without one, the resource (temporary) disk. Absent: not supported.
   */
  ephemeralOsDisk?: { cacheGiB?: number };
}

/** One resource SKU record as the SKUs API returns it: one per SKU and location. */
export interface SkuEntry {
  name: string;
  resourceType: 'virtualMachines' | 'disks' | 'availabilitySets';
  location: string;
  gpus?: number;
  /** Not offered to this subscription in this location (reason code NotAvailableForSubscription). */
  restricted?: boolean;
}

export interface ImageEntry {
  publisher: string;
  offer: string;
  sku: string;
  versions: string[];
  locations: string[];
  /** V1 or V2 (default V2, as current marketplace images). */
  hyperVGeneration?: 'V1' | 'V2';
  /** x64 (default) or Arm64. */
  architecture?: 'x64' | 'Arm64';
  /** The purchase plan a VM made from it must name (third-party marketplace images). */
  plan?: { name: string; product: string; publisher: string };
}

export interface PriceEntry {
  armSkuName: string;
  armRegionName: string;
  /** In USD; other currencies are derived with fixed rates. */
  retailPrice: number;
  productName: string;
  skuName: string;
  meterName: string;
  type: 'Consumption' | 'Reservation' | 'DevTestConsumption';
  serviceName: string;
}

export interface Catalog {
  sizes: VmSizeEntry[];
  skus: SkuEntry[];
  images: ImageEntry[];
  prices: PriceEntry[];
}

/** Currencies the fake prices API accepts, with their rate against USD. */
export const currencyRates: Record<string, number> = { USD: 1, EUR: 0.92, GBP: 0.79, JPY: 151 };

const both = ['eastus', 'westeurope'];

const size = (name: string, cores: number, memoryGiB: number, tempDiskGiB: number, locations = both): VmSizeEntry => ({
  name,
  numberOfCores: cores,
  memoryInMB: memoryGiB * 1024,
  osDiskSizeInMB: 1047552,
  resourceDiskSizeInMB: tempDiskGiB * 1024,
  maxDataDiskCount: Math.max(2, cores * 2),
  locations,
});

/** Pay-as-you-go Linux price plus the meters a gate must not mistake for it (Windows, Spot, Low Priority, reservations). */
const meters = (armSkuName: string, series: string, linuxUsd: number, regions = both): PriceEntry[] => {
  const short = armSkuName.replace(/^Standard_/, '').replace(/_/g, ' ');
  return regions.flatMap((armRegionName) => {
    const regional = armRegionName === 'westeurope' ? 1.1 : 1;
    const at = (usd: number): number => Math.round(usd * regional * 10000) / 10000;
    const base = { armSkuName, armRegionName, serviceName: 'Virtual Machines' };
    return [
      { ...base, retailPrice: at(linuxUsd * 1.9), productName: `Virtual Machines ${series} Series Windows`, skuName: short, meterName: short, type: 'Consumption' as const },
      { ...base, retailPrice: at(linuxUsd * 0.2), productName: `Virtual Machines ${series} Series`, skuName: `${short} Spot`, meterName: `${short} Spot`, type: 'Consumption' as const },
      { ...base, retailPrice: at(linuxUsd), productName: `Virtual Machines ${series} Series`, skuName: short, meterName: short, type: 'Consumption' as const },
      { ...base, retailPrice: at(linuxUsd * 0.25), productName: `Virtual Machines ${series} Series`, skuName: `${short} Low Priority`, meterName: `${short} Low Priority`, type: 'Consumption' as const },
      { ...base, retailPrice: at(linuxUsd * 0.6 * 8760), productName: `Virtual Machines ${series} Series`, skuName: short, meterName: short, type: 'Reservation' as const },
    ];
  });
};

export function defaultCatalog(): Catalog {
  const sizes = [
    size('Standard_B2s', 2, 4, 8),
    size('Standard_D2s_v5', 2, 8, 0),
    size('Standard_D4s_v5', 4, 16, 0),
    size('Standard_E2s_v5', 2, 16, 0),
    size('Standard_F2s_v2', 2, 4, 16),
    { ...size('Standard_NC6s_v3', 6, 112, 336), ephemeralOsDisk: { cacheGiB: 344 } },
    size('Standard_ND96asr_v4', 96, 900, 6000, ['eastus']),
    size('Standard_NC4as_T4_v3', 4, 28, 176, ['westeurope']),
    { ...size('Standard_D2ps_v5', 2, 8, 0), architecture: 'Arm64' as const, hyperVGenerations: 'V2' },
    // Local temporary disk and cache: ephemeral OS disks fit (the NC's too).
    { ...size('Standard_D2ds_v5', 2, 8, 75), ephemeralOsDisk: {} },
    { ...size('Standard_A2_v2', 2, 4, 20), hyperVGenerations: 'V1' },
  ];
  const gpus: Record<string, number> = { Standard_NC6s_v3: 1, Standard_ND96asr_v4: 8, Standard_NC4as_T4_v3: 1 };
  const skus: SkuEntry[] = sizes.flatMap((s) =>
    s.locations.map((location) => ({
      name: s.name,
      resourceType: 'virtualMachines' as const,
      location,
      ...(gpus[s.name] ? { gpus: gpus[s.name] } : {}),
      ...(s.name === 'Standard_F2s_v2' && location === 'eastus' ? { restricted: true } : {}),
    })),
  );
  skus.push(...both.map((location) => ({ name: 'Premium_LRS', resourceType: 'disks' as const, location })));
  const prices = [
    ...meters('Standard_B2s', 'BS', 0.0416),
    ...meters('Standard_D2s_v5', 'Dsv5', 0.096),
    ...meters('Standard_D4s_v5', 'Dsv5', 0.192),
    ...meters('Standard_D2ds_v5', 'Ddsv5', 0.113),
    // Standard_E2s_v5 has no published price: a gate must still list it.
    ...meters('Standard_F2s_v2', 'FSv2', 0.0846),
    ...meters('Standard_NC6s_v3', 'NCSv3', 3.06),
    ...meters('Standard_ND96asr_v4', 'NDasrA100v4', 27.197, ['eastus']),
    ...meters('Standard_NC4as_T4_v3', 'NCasT4v3', 0.526, ['westeurope']),
  ];
  const images: ImageEntry[] = [
    { publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server', versions: ['24.04.202409120', '24.04.202502210', '24.04.202406140', '24.04.202410010'], locations: both },
    { publisher: 'Canonical', offer: '0001-com-ubuntu-server-jammy', sku: '22_04-lts-gen2', versions: ['22.04.202501150', '22.04.202312060'], locations: both },
    { publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server-arm64', versions: ['24.04.202502210'], locations: both, architecture: 'Arm64' },
    { publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server-gen1', versions: ['24.04.202502210'], locations: both, hyperVGeneration: 'V1' },
    {
      publisher: 'nvidia',
      offer: 'ngc_azure_17_11',
      sku: 'ngc-base-version-24_03_4_gen2',
      versions: ['24.03.4'],
      locations: both,
      plan: { name: 'ngc-base-version-24_03_4_gen2', product: 'ngc_azure_17_11', publisher: 'nvidia' },
    },
  ];
  return { sizes, skus, images, prices };
}

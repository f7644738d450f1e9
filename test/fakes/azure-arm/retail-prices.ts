import { createHash } from 'node:crypto';
import { ArmError } from './arm-error.js';
import { currencyRates, type PriceEntry } from './catalog.js';
import { parseEqFilter } from './odata.js';

const regionNames: Record<string, string> = { eastus: 'US East', westeurope: 'EU West' };

/** Filter fields of the retail prices API (the `priceType` filter matches the items' `type`). */
const filterFields: Record<string, keyof PriceEntry> = {
  servicename: 'serviceName',
  armregionname: 'armRegionName',
  armskuname: 'armSkuName',
  pricetype: 'type',
  skuname: 'skuName',
  productname: 'productName',
  metername: 'meterName',
};

const guid = (seed: string): string => {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
};

const item = (p: PriceEntry, currency: string): Record<string, unknown> => {
  const price = Math.round(p.retailPrice * currencyRates[currency]! * 1e6) / 1e6;
  return {
    currencyCode: currency,
    tierMinimumUnits: 0,
    ...(p.type === 'Reservation' ? { reservationTerm: '1 Year' } : {}),
    retailPrice: price,
    unitPrice: price,
    armRegionName: p.armRegionName,
    location: regionNames[p.armRegionName] ?? p.armRegionName,
    effectiveStartDate: '2024-01-01T00:00:00Z',
    meterId: guid(`${p.meterName}/${p.productName}/${p.armRegionName}`),
    meterName: p.meterName,
    productId: 'DZH318Z0BQPS',
    skuId: 'DZH318Z0BQPS/00TG',
    productName: p.productName,
    skuName: p.skuName,
    serviceName: p.serviceName,
    serviceId: 'DZH313Z7MMC8',
    serviceFamily: 'Compute',
    unitOfMeasure: '1 Hour',
    type: p.type,
    isPrimaryMeterRegion: true,
    armSkuName: p.armSkuName,
  };
};

/**
 * GET /api/retail/prices: anonymous, OData `$filter`, `currencyCode='XXX'`, pages of `pageSize` items
 * linked by an absolute `NextPageLink` (null on the last page), the shape prices.azure.com answers with.
 */
export function retailPricesPage(prices: PriceEntry[], url: URL, pageSize: number): { status: number; body: unknown } {
  const rawCurrency = url.searchParams.get('currencyCode') ?? "'USD'";
  const currency = rawCurrency.replace(/^'(.*)'$/, '$1').toUpperCase();
  if (!(currency in currencyRates))
    throw new ArmError(400, 'InvalidCurrencyCode', `Currency code ${rawCurrency} is not supported.`);
  const clauses = parseEqFilter(url.searchParams.get('$filter'));
  for (const field of clauses.keys())
    if (!(field in filterFields)) throw new ArmError(400, 'InvalidFilter', `Filtering on '${field}' is not supported.`);
  const matching = prices.filter((p) =>
    [...clauses].every(([field, value]) => String(p[filterFields[field]!]).toLowerCase() === value.toLowerCase()),
  );
  const skip = Number(url.searchParams.get('$skip') ?? '0');
  const page = matching.slice(skip, skip + pageSize).map((p) => item(p, currency));
  let next: string | null = null;
  if (skip + pageSize < matching.length) {
    const nextUrl = new URL(url.href);
    nextUrl.searchParams.set('$skip', String(skip + pageSize));
    next = nextUrl.href;
  }
  return {
    status: 200,
    body: { BillingCurrency: currency, CustomerEntityId: 'Default', CustomerEntityType: 'Retail', Items: page, NextPageLink: next, Count: page.length },
  };
}

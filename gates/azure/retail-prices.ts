import { createDefaultHttpClient, createPipelineFromOptions, createPipelineRequest, type HttpClient, type Pipeline } from '@azure/core-rest-pipeline';
import type { TransportSettings } from './transport.js';

/** One item of the Azure Retail Prices API (the fields the gate reads). */
export interface RetailPrice {
  armSkuName: string;
  armRegionName: string;
  retailPrice: number;
  currencyCode: string;
  productName: string;
  skuName: string;
  meterName: string;
  type: string;
  unitOfMeasure: string;
}

interface PricesPage {
  Items?: RetailPrice[];
  NextPageLink?: string | null;
}

/** A region's VM prices are a few thousand items, 100 a page; this bounds a runaway chain of links. */
const MAX_PAGES = 500;

const quote = (value: string): string => `'${value.replace(/'/g, "''")}'`;

/**
 * The public, anonymous Azure Retail Prices API, on the gate's transport (same retries and trusted
 * authorities as ARM, but no credential: a management token has no business there).
 */
export class RetailPrices {
  private readonly pipeline: Pipeline;
  private readonly client: HttpClient = createDefaultHttpClient();

  constructor(
    private readonly pricesUrl: string,
    private readonly currency: string,
    transport: TransportSettings,
  ) {
    this.pipeline = createPipelineFromOptions({ retryOptions: transport.retryOptions, ...(transport.tlsOptions ? { tlsOptions: transport.tlsOptions } : {}) });
    for (const { policy, position } of transport.additionalPolicies) this.pipeline.addPolicy(policy, position === 'perRetry' ? { afterPhase: 'Sign' } : {});
  }

  /** Pay-as-you-go VM meters of one region, every page followed. */
  async virtualMachinePrices(location: string): Promise<RetailPrice[]> {
    const filter = `serviceName eq 'Virtual Machines' and armRegionName eq ${quote(location)} and priceType eq 'Consumption'`;
    const first = new URL(this.pricesUrl);
    // Spaces as %20: the API's OData parser is not a form decoder.
    first.search = `currencyCode=${encodeURIComponent(quote(this.currency))}&$filter=${encodeURIComponent(filter)}`;
    const items: RetailPrice[] = [];
    let next: string | null | undefined = first.href;
    for (let pages = 0; next; pages++) {
      if (pages === MAX_PAGES) throw new Error(`retail prices: more than ${MAX_PAGES} pages`);
      const url: URL = new URL(next);
      if (url.origin !== first.origin) throw new Error(`retail prices: next page ${url.origin} is not on ${first.origin}`);
      const page = await this.getPage(url.href);
      items.push(...(page.Items ?? []));
      next = page.NextPageLink;
    }
    return items;
  }

  private async getPage(url: string): Promise<PricesPage> {
    const response = await this.pipeline.sendRequest(this.client, createPipelineRequest({ url, method: 'GET', headers: undefined }));
    if (response.status !== 200) throw new Error(`retail prices: HTTP ${response.status}`);
    return JSON.parse(response.bodyAsText ?? '{}') as PricesPage;
  }
}

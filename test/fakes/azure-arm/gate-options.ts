import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, type FakeArm } from './fake-arm.js';

/**
 * `gates[].options` of an azure gate that talks to this fake: every endpoint on the fake, the fake's CA
 * trusted (written to `<dir>/fake-arm-ca.pem`), quick polling and retries. Tests (and a core's config in
 * an end-to-end test) start from these and override what they exercise.
 */
export function azureGateOptionsFor(fake: FakeArm, dir: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const caCertPath = join(dir, 'fake-arm-ca.pem');
  writeFileSync(caCertPath, fake.tls.caPem);
  return {
    subscriptionId: fake.subscriptionId,
    tenantId: fake.tenantId,
    clientId: FAKE_CLIENT_ID,
    clientSecret: FAKE_CLIENT_SECRET,
    location: 'eastus',
    armEndpoint: fake.url,
    authorityHost: fake.url,
    pricesUrl: fake.pricesUrl,
    caCertPath,
    corePublicIp: '203.0.113.7',
    pollIntervalMs: 10,
    operationTimeoutSec: 10,
    retry: { maxRetries: 4, retryDelayMs: 20, maxRetryDelayMs: 2000 },
    // Tests run several gate objects over one spool (a restart within the process): the background reconciliation
    // and node watch would take each other's creations for interrupted ones. Tests of them turn them on, or call them.
    reconcileIntervalSec: 0,
    watchIntervalSec: 0,
    // The shared network outlives partitions (a group of its own): tests that check nothing is left turn it on
    // only where they test it.
    sharedNetwork: false,
    ...overrides,
  };
}

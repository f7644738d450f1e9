export { FakeArm, fakeArmTls, FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, FAKE_SUBSCRIPTION, FAKE_TENANT } from './fake-arm.js';
export type { FakeArmOptions, FakeArmTls, RecordedRequest } from './fake-arm.js';
export type { Catalog, ImageEntry, PriceEntry, SkuEntry, VmSizeEntry } from './catalog.js';
export { defaultCatalog } from './catalog.js';
export type { FaultSpec, FaultKind } from './faults.js';
export { Fault } from './faults.js';
export type { ClientRegistration } from './identity.js';
export { azureGateOptionsFor } from './gate-options.js';

import { expect } from 'chai';
import type { Flavor } from '../terminal-protocol/common.js';
import { flavorTable } from '../terminal/commands/flavors.js';

const flavor = (over: Partial<Flavor>): Flavor => ({ remote: 'azure', name: 'Standard_D2s_v5', cpus: 2, gpus: 0, memMiB: 8192, diskMiB: 0, ...over }) as Flavor;

describe('swm flavors', () => {
  it('shows the spot price beside the on-demand one where a cloud sells spot nodes', () => {
    const lines = flavorTable([flavor({ pricePerHour: 0.096, spotPrice: 0.0123, currency: 'USD' }), flavor({ name: 'Standard_B1s', pricePerHour: 0.0104, currency: 'USD' })]).trim().split('\n');
    expect(lines[0]).to.match(/PRICE\/NODE-HOUR\s+SPOT\/NODE-HOUR$/);
    expect(lines[1]).to.match(/0\.0960 USD\s+0\.0123 USD$/);
    expect(lines[2]).to.match(/0\.0104 USD\s+-$/);
  });

  it('leaves the spot column out where no flavor has a spot price (the local gate)', () => {
    const table = flavorTable([flavor({ remote: 'local', name: 'local.small', pricePerHour: 0, currency: 'USD' })]);
    expect(table).to.include('PRICE/NODE-HOUR').and.not.to.include('SPOT');
  });
});

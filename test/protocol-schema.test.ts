import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { protocolSchema } from '../terminal-protocol/export-schema.js';
import { gateMethods } from '../terminal-protocol/gate-methods.js';
import { terminalMethods } from '../terminal-protocol/terminal-methods.js';

const committed = fileURLToPath(new URL('../../terminal-protocol/schema.json', import.meta.url));

describe('the published JSON Schema of the protocol', () => {
  it('is up to date with the zod schemas (run `make protocol-schema` after changing them)', () => {
    expect(JSON.parse(readFileSync(committed, 'utf8'))).to.deep.equal(JSON.parse(JSON.stringify(protocolSchema())));
  });

  it('describes every method with its roles, params and result', () => {
    const schema = protocolSchema() as { terminal: { methods: Record<string, { roles: string[]; params: object; result: object }> }; gate: { methods: Record<string, unknown> } };
    expect(Object.keys(schema.terminal.methods)).to.have.members(Object.keys(terminalMethods));
    expect(Object.keys(schema.gate.methods)).to.have.members(Object.keys(gateMethods));
    expect(schema.terminal.methods['admin.user.add']!.roles).to.deep.equal(['admin']);
    expect(schema.terminal.methods['job.get']!.params).to.have.nested.property('properties.id');
  });
});

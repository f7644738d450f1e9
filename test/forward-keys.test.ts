import { expect } from 'chai';
import { forwardKeyLine, parseForwardKeys, withoutJob } from '../terminal-protocol/forward-keys.js';
import { generateEd25519KeyPair } from '../terminal-protocol/ssh-keys.js';
import { mayReach } from '../terminal/direct-forward.js';

const JOB_A = '3f0c2a9e-5a7b-4c1d-9e8f-0a1b2c3d4e5f';
const JOB_B = '7d6e5f4a-3b2c-4d1e-8f9a-0b1c2d3e4f5a';

describe("forward keys (swm forward's direct path): the lines the core writes and the node reads", () => {
  const key = generateEd25519KeyPair().publicKey;
  const [type, blob] = key.split(' ');

  it('writes a line OpenSSH reads as: this port only, no command, no other right', () => {
    const line = forwardKeyLine(key, JOB_A, '127.0.0.1', 8888);
    expect(line).to.equal(`restrict,port-forwarding,command="/bin/false",permitopen="127.0.0.1:8888" ${type} ${blob} skyport-forward:${JOB_A}`);
    expect(parseForwardKeys(`${line}\n`)).to.deep.equal([{ key: `${type} ${blob}`, permitOpen: [{ host: '127.0.0.1', port: 8888 }] }]);
  });

  it('takes only restricted lines that name where they may connect, whatever else the file holds', () => {
    const text = [
      '# a comment',
      `${type} ${blob} an unrestricted key: a login, not a forward key`,
      `permitopen="127.0.0.1:1" ${type} ${blob} not restricted`,
      `restrict ${type} ${blob} restricted, but permits nothing`,
      `restrict,permitopen="127.0.0.1:99999" ${type} ${blob} no such port`,
      `restrict,permitopen="127.0.0.1:80 ${type} ${blob} unterminated quote`,
      `restrict,command="echo a,b",permitopen="127.0.0.1:22",permitopen="localhost:8080" ${type} ${blob} two`,
      '',
    ].join('\n');
    expect(parseForwardKeys(text)).to.deep.equal([
      {
        key: `${type} ${blob}`,
        permitOpen: [
          { host: '127.0.0.1', port: 22 },
          { host: 'localhost', port: 8080 },
        ],
      },
    ]);
  });

  it("removes one job's lines and keeps the others'", () => {
    const a = forwardKeyLine(key, JOB_A, '127.0.0.1', 1000);
    const b = forwardKeyLine(key, JOB_B, '127.0.0.1', 2000);
    expect(withoutJob(`${a}\n${b}\n${a}\n`, JOB_A)).to.equal(`${b}\n`);
    expect(withoutJob('', JOB_A)).to.equal('');
  });
});

describe("swm forward's choice of path (pure)", () => {
  it('takes a node on loopback for a neighbour only when the core is on loopback too', () => {
    expect(mayReach('127.0.0.1', 'wss://localhost:8443/')).to.equal(true);
    expect(mayReach('127.0.0.1', 'wss://127.0.0.1:8443/')).to.equal(true);
    expect(mayReach('127.0.0.1', 'wss://core.example.org:8443/'), "the core's own loopback is not this machine's").to.equal(false);
    expect(mayReach('20.51.3.7', 'wss://core.example.org:8443/')).to.equal(true);
  });
});

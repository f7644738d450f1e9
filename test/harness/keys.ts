import { generateEd25519KeyPair } from '../../terminal-protocol/ssh-keys.js';

/**
 * An ed25519 key pair for a test, shaped as ssh2's generator returns it: always one that ssh2 reads back (its
 * generator's own output is unreadable about once in 240 keys, which made tests fail at random).
 */
export function testKeyPair(): { private: string; public: string } {
  const pair = generateEd25519KeyPair();
  return { private: pair.privateKey, public: pair.publicKey };
}

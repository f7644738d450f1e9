/**
 * The cipher preference of both ends of our SSH (the core's client, the local gate's node server): AES-GCM
 * first, which Node's crypto runs natively (AES-NI, no separate MAC), then ssh2's own list as fallbacks, so that
 * a peer without GCM (an sshd configured otherwise on a cloud node) still negotiates. SSH picks the client's
 * first cipher the server also has. Host keys and key exchange are untouched.
 *
 * ssh2 (1.17) applies the keys of this object in order: GCM is removed from its defaults, then put in front
 * (`prepend` alone leaves a cipher already listed where it is).
 */
import type { AlgorithmList, CipherAlgorithm } from 'ssh2';

export const PREFERRED_CIPHERS: readonly CipherAlgorithm[] = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com'];

/** ssh2's `algorithms.cipher` for a Client or a Server. */
export const sshCipherPreference = (): AlgorithmList<CipherAlgorithm> => ({
  remove: [...PREFERRED_CIPHERS],
  prepend: [...PREFERRED_CIPHERS],
  append: [],
});

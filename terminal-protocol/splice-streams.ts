import type { Duplex } from 'node:stream';

/**
 * Join two byte streams both ways, keeping half-closes (one side's end ends the other's writing, as TCP
 * does). A side that fails, or closes before its end (an abort), takes the other down with it; otherwise
 * each closes on its own once both directions are done. `onClosed` runs once, when both have closed.
 */
export function spliceStreams(a: Duplex, b: Duplex, onClosed?: () => void): void {
  let closed = 0;
  const watch = (x: Duplex, y: Duplex) => {
    x.on('error', (error: Error) => y.destroy(error));
    x.once('close', () => {
      if (!x.readableEnded && !y.destroyed) y.destroy();
      if (++closed === 2) onClosed?.();
    });
  };
  watch(a, b);
  watch(b, a);
  a.pipe(b);
  b.pipe(a);
}

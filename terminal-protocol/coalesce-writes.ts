import type { Socket } from 'node:net';

/**
 * Gather the writes made to a TCP socket in one turn of the event loop into one system call. SSH
 * implementations write every SSH packet (32 KiB at most) on its own, and a burst of forwarded data
 * arrives as many small chunks: without this, bulk transfers spend much of their CPU in write(2). Call it
 * after connect(), which puts the prototype's write back.
 */
export function coalesceWrites<S extends Socket>(socket: S): S {
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  socket.write = ((...args: unknown[]) => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(() => {
        corked = false;
        socket.uncork();
      });
    }
    return write(...args);
  }) as S['write'];
  return socket;
}

/**
 * Bulk streams on the terminal's WebSocket (DESIGN.md §6), one file per concern, as README.md draws them:
 *
 *   stream-frames.ts    the binary frame codec (header layout, types, RESET payloads)
 *   stream-mux.ts       the streams of one connection: routing, windows, connection-level backpressure
 *   file-send.ts        a file sent on a stream (uploads from the terminal, downloads from the core)
 *   file-receive.ts     a file received from a stream into a sink, checked by its SHA-256
 *   running-hash.ts     the SHA-256 both ends keep as bytes pass
 *   mux-stream.ts       a forwarded TCP connection as a Node Duplex over the mux
 *   splice-streams.ts   two byte streams joined both ways, half-closes kept
 *   coalesce-writes.ts  one write(2) per event-loop turn for sockets that write in small pieces
 *
 * This module is their public face: callers import from here.
 */
export * from './stream-frames.js';
export * from './stream-mux.js';
export * from './file-send.js';
export * from './file-receive.js';
export * from './running-hash.js';
export * from './mux-stream.js';
export * from './splice-streams.js';
export * from './coalesce-writes.js';

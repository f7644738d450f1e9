import { crc32 } from 'node:zlib';
import { ErrorCode, RpcError } from './errors.js';

/**
 * The binary frames of bulk streams (DESIGN.md §6): file uploads, file downloads and port-forward
 * connections travel as binary WebSocket messages beside the JSON-RPC text frames of the same socket, one
 * frame per message. A stream is opened by an RPC method whose answer names its id (job.input.open,
 * job.file.open, job.forward.open, job.exec); ids are allocated by the core. Each frame:
 *
 *   byte 0   u8   version (1)
 *        1   u8   type: DATA 0, CREDIT 1, END 2, RESET 3 (4 was REWIND: no longer sent, refused)
 *        2   u16  flags: 1 = UNCHECKED (no CRC: the CRC field is 0); other bits 0
 *        4   u32  stream id
 *        8   u64  offset
 *       16   u32  CRC-32 of the payload, or 0 when UNCHECKED
 *       20   ...  payload
 *
 * - DATA    bytes of the stream at `offset` (at most MAX_FRAME_PAYLOAD of them).
 * - CREDIT  the receiver has consumed the stream up to `offset`; the sender may have at most `window` bytes
 *           (announced by the open method) past that point in flight (stream-mux.ts, file-send.ts).
 * - END     the sender has sent everything up to `offset`. On file streams the receiver answers END too,
 *           once everything is written and verified: that END is the acceptance. A download's END carries
 *           the 32-byte SHA-256 of the whole file.
 * - RESET   the stream is aborted; payload: UTF-8 JSON {code, message} with an ErrorCode.
 *
 * Offsets are absolute positions in the stream, so a resumed upload simply starts at a later offset.
 *
 * Frames are sent UNCHECKED: they travel inside TLS, whose AEAD rejects any altered record (the connection
 * fails, nothing altered is ever delivered), and a file's bytes are checked end to end by its SHA-256. A
 * frame that does carry a CRC (a sender of an earlier version) is still checked, and one that fails is a
 * broken stream. See README.md, "Why no CRC per frame".
 */

export const STREAM_FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 20;
/** Largest DATA payload: big enough that per-frame costs vanish, small enough to keep memory flat. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;

export const FrameType = { Data: 0, Credit: 1, End: 2, Reset: 3 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];
/** Frame flags (bits of the u16 after the type). */
export const FrameFlag = { Unchecked: 1 } as const;

export interface StreamFrame {
  type: FrameType;
  stream: number;
  offset: number;
  /** A view of the received message, not a copy. */
  payload: Buffer;
  /** The CRC-32 the frame carries (0 when UNCHECKED; see `payloadIntact`). */
  crc: number;
  flags: number;
}

/** A malformed binary frame: the other side does not speak this protocol. */
export class StreamFrameError extends Error {
  override name = 'StreamFrameError';
}

const EMPTY = Buffer.alloc(0);

/** A frame buffer whose payload (bytes FRAME_HEADER_BYTES..) the caller fills in place, then `sealFrame`s. */
export const allocFrame = (payloadBytes: number): Buffer => Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);

/** Writes the header of a frame made by allocFrame (UNCHECKED: no CRC is computed). */
export function sealFrame(frame: Buffer, type: FrameType, stream: number, offset: number): Buffer {
  frame.writeUInt8(STREAM_FRAME_VERSION, 0);
  frame.writeUInt8(type, 1);
  frame.writeUInt16BE(FrameFlag.Unchecked, 2);
  frame.writeUInt32BE(stream >>> 0, 4);
  frame.writeUInt32BE(Math.floor(offset / 0x1_0000_0000), 8);
  frame.writeUInt32BE(offset % 0x1_0000_0000, 12);
  frame.writeUInt32BE(0, 16);
  return frame;
}

export function encodeFrame(type: FrameType, stream: number, offset: number, payload: Buffer = EMPTY): Buffer {
  const frame = allocFrame(payload.length);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return sealFrame(frame, type, stream, offset);
}

/** Parses a binary WebSocket message; throws StreamFrameError on anything malformed. The payload is a view, not a copy. */
export function decodeFrame(data: Buffer): StreamFrame {
  if (data.length < FRAME_HEADER_BYTES) throw new StreamFrameError(`binary frame of ${data.length} bytes is shorter than its header`);
  const version = data.readUInt8(0);
  if (version !== STREAM_FRAME_VERSION) throw new StreamFrameError(`binary frame version ${version} is not ${STREAM_FRAME_VERSION}`);
  const type = data.readUInt8(1);
  if (type > FrameType.Reset) throw new StreamFrameError(`binary frame type ${type} is unknown`);
  const flags = data.readUInt16BE(2);
  if ((flags & ~FrameFlag.Unchecked) !== 0) throw new StreamFrameError(`binary frame flags ${flags} are unknown`);
  const offset = data.readUInt32BE(8) * 0x1_0000_0000 + data.readUInt32BE(12);
  if (!Number.isSafeInteger(offset)) throw new StreamFrameError('binary frame offset is out of range');
  const payload = data.subarray(FRAME_HEADER_BYTES);
  if (type === FrameType.Data && payload.length > MAX_FRAME_PAYLOAD)
    throw new StreamFrameError(`DATA frame of ${payload.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  return { type: type as FrameType, stream: data.readUInt32BE(4), offset, payload, crc: data.readUInt32BE(16), flags };
}

/** Whether a frame's payload is what was sent, as far as the frame can tell: it carries no CRC, or a matching one. */
export const payloadIntact = (frame: StreamFrame): boolean =>
  (frame.flags & FrameFlag.Unchecked) !== 0 || (frame.payload.length ? crc32(frame.payload) : 0) === frame.crc;

export const resetFrame = (stream: number, error: RpcError): Buffer =>
  encodeFrame(FrameType.Reset, stream, 0, Buffer.from(JSON.stringify({ code: error.code, message: error.message })));

/** The error a RESET frame carries. */
export function resetError(frame: StreamFrame): RpcError {
  try {
    const { code, message } = JSON.parse(frame.payload.toString('utf8')) as { code?: unknown; message?: unknown };
    if (typeof code === 'number' && typeof message === 'string') return new RpcError(code, message);
  } catch {
    // fall through
  }
  return new RpcError(ErrorCode.Internal, 'stream reset by the other side');
}

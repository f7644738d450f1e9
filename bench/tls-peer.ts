/**
 * The peer of the terminal → core upload: the same bytes over plain mutual TLS on loopback, with the same
 * certificates (the admin's bundle to the core's certificate), from a file into a file, in two processes as
 * the terminal and the core are. No framing, no flow control of ours, no hashing: what the wire and the disk
 * allow on this machine, the ceiling an upload protocol can approach.
 *
 * Run as a script (`node dist/bench/tls-peer.js SPOOL_DIR OUT_FILE|-`), it is the receiving side: it listens
 * on a free loopback port (printed as `listening <port>`), writes each connection's bytes to OUT_FILE (or
 * drops them, with `-`: the wire alone) and answers one byte once they are all written. `sendOverTls` is
 * the sending side.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { homePaths, spoolPaths } from '../spool-bootstrap/paths.js';

export interface TlsPeer {
  port: number;
  pid: number;
  stop: () => Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

/** Start the receiving side in a process of its own; resolves once it listens. `outFile` null: drop the bytes. */
export function startTlsPeer(spoolDir: string, outFile: string | null): Promise<TlsPeer> {
  const child: ChildProcess = spawn(process.execPath, [SELF, spoolDir, outFile ?? '-'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const m = /listening (\d+)/.exec(output);
      if (m)
        resolve({
          port: Number(m[1]),
          pid: child.pid!,
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGKILL');
            }),
        });
    });
    child.once('exit', (code) => reject(new Error(`the TLS peer exited with ${code}`)));
  });
}

/** Send `file` to the peer over mutual TLS with the user's bundle in `homeDir`; resolves once it has all been written there. */
export function sendOverTls(port: number, homeDir: string, file: string): Promise<void> {
  const home = homePaths(homeDir);
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      cert: readFileSync(home.cert),
      key: readFileSync(home.key),
      ca: readFileSync(home.ca),
    });
    socket.once('error', reject);
    socket.once('data', () => {
      socket.end();
      resolve();
    });
    // The file's end ends our side of the connection; the peer answers once it has written everything.
    socket.once('secureConnect', () => createReadStream(file, { highWaterMark: 1024 * 1024 }).pipe(socket));
  });
}

function serve(spoolDir: string, outFile: string): void {
  const spool = spoolPaths(spoolDir);
  const server = createServer(
    {
      cert: readFileSync(spool.core.cert),
      key: readFileSync(spool.core.key),
      ca: readFileSync(spool.ca.cert),
      requestCert: true,
      rejectUnauthorized: true,
      allowHalfOpen: true,
    },
    (socket) => {
      if (outFile === '-') {
        socket.on('data', () => undefined);
        socket.once('end', () => socket.end('k'));
        return;
      }
      const out = createWriteStream(outFile);
      socket.pipe(out);
      out.once('finish', () => socket.end('k'));
    },
  );
  server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`));
}

if (process.argv[1] === SELF) serve(process.argv[2]!, process.argv[3]!);

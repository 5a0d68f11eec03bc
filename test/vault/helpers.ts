import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as yauzl from 'yauzl';
import * as yazl from 'yazl';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentVaultError } from '../../src/core/errors';

export function makeTmpRoot(name: string): { root: string; dir(sub: string): string; cleanup(): void } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `av-${name}-`));
  let n = 0;
  return {
    root,
    dir(sub: string) {
      const d = path.join(root, `${n++}-${sub}`);
      fs.mkdirSync(d, { recursive: true });
      return d;
    },
    cleanup() {
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

export async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), code: string | string[], message?: RegExp): Promise<AgentVaultError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected an AgentVaultError ${String(code)}, nothing was thrown`);
  assert.ok(err instanceof AgentVaultError, `expected AgentVaultError, got ${(err as Error)?.stack ?? String(err)}`);
  const codes = Array.isArray(code) ? code : [code];
  assert.ok(codes.includes(err.code), `expected code ${codes.join('|')}, got ${err.code}: ${err.message}`);
  if (message) assert.match(err.message, message);
  return err;
}

export interface RawZipEntry {
  name: string;
  data: Buffer;
  compressed: boolean;
  /** Offset of the entry's (stored) data in the zip file. */
  dataOffset: number;
}

/** Every entry of a zip with its bytes (uncompressed) and where its data starts in the file. */
export async function readZip(file: string): Promise<{ entries: RawZipEntry[]; comment: string }> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) => yauzl.open(file, { lazyEntries: true, autoClose: false }, (e, z) => (e ? rej(e) : res(z))));
  const fd = fs.openSync(file, 'r');
  const entries: RawZipEntry[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('entry', (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (err, s) => {
          if (err) return reject(err);
          const chunks: Buffer[] = [];
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('error', reject);
          s.on('end', () => {
            const lh = Buffer.alloc(30);
            fs.readSync(fd, lh, 0, 30, entry.relativeOffsetOfLocalHeader);
            const dataOffset = entry.relativeOffsetOfLocalHeader + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
            entries.push({ name: entry.fileName, data: Buffer.concat(chunks), compressed: entry.compressionMethod === 8, dataOffset });
            zip.readEntry();
          });
        });
      });
      zip.once('end', () => resolve());
      zip.once('error', reject);
      zip.readEntry();
    });
  } finally {
    fs.closeSync(fd);
    zip.close();
  }
  return { entries, comment: String(zip.comment ?? '') };
}

/** Writes a zip from entries (in order) with a comment: for hand-made altered archives. */
export async function writeZip(file: string, entries: Array<{ name: string; data: Buffer; compressed?: boolean }>, comment: string): Promise<void> {
  const zip = new yazl.ZipFile();
  for (const e of entries) zip.addBuffer(e.data, e.name, { compress: e.compressed ?? false });
  zip.end({ forceZip64Format: false, comment });
  await pipeline(zip.outputStream as Readable, fs.createWriteStream(file));
}

/** Flips one byte of the file at `offset`. */
export function flipByte(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0] ^= 0x5a;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, n.name);
      if (n.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out.sort();
}

/** A local HTTP server that records requests; `mode` decides the answer. */
export async function startHookServer(
  mode: 'ok' | 'error' | 'hang' = 'ok',
): Promise<{ url: string; requests: Array<{ method: string; headers: http.IncomingHttpHeaders; body: any }>; close(): Promise<void> }> {
  const requests: Array<{ method: string; headers: http.IncomingHttpHeaders; body: any }> = [];
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', headers: req.headers, body: text ? JSON.parse(text) : null });
      if (mode === 'hang') return;
      res.statusCode = mode === 'ok' ? 204 : 500;
      res.end();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

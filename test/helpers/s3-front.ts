/**
 * An HTTP front on 127.0.0.1 before moto for the object-storage fault tests: it forwards every
 * request and, on demand,
 * - answers the next requests that match with an S3 error (503 SlowDown, 500 InternalError, 501
 *   NotImplemented…) in S3's XML form, as a busy or limited server does;
 * - flips one byte in the body of the next requests that carry `x-amz-checksum-sha256` (damage
 *   on the wire, after the client computed its checksum);
 * - checks `x-amz-checksum-sha256` against the body and refuses a mismatch with 400 BadDigest,
 *   as AWS S3 and MinIO do on arrival (moto 5.2.5 stores the header without checking it);
 * - flips one byte in, or cuts the connection halfway through, the body of the next object
 *   downloads (GET answered 200 or 206);
 * - leaves the next requests that match without an answer, or with its head and half its body,
 *   the connection open and silent (a server or link that stalls), until the client gives up.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FrontRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface S3Front {
  port: number;
  /** s3://<bucket>/<prefix>?endpoint=<this front>&path-style=true */
  location(bucket: string, prefix?: string): string;
  /** Answer the next `times` requests that `match` with this S3 error. */
  fail(match: (r: FrontRequest) => boolean, times: number, status: number, code: string): void;
  /** Flip a byte in the bodies of the next `n` requests carrying x-amz-checksum-sha256. */
  damageUploads: number;
  /** Refuse a body whose SHA-256 differs from its x-amz-checksum-sha256 (400 BadDigest). */
  validateChecksums: boolean;
  /** Hold requests that match this long before they are forwarded (a slow link); `seen` is called when one arrives. */
  delay: { match: (r: FrontRequest) => boolean; ms: number; seen?: (r: FrontRequest) => void } | null;
  /** Drop If-None-Match from requests, as a server that ignores conditional writes would. */
  ignoreConditional: boolean;
  /** Flip a byte in the next `n` object download bodies. */
  damageDownloads: number;
  /** Cut the connection halfway through the next `n` object download bodies. */
  cutDownloads: number;
  /**
   * Leave the next `times` requests that match unanswered, the connection open: 'head' sends
   * nothing, 'body' sends the answer's head and half its body.
   */
  stall(match: (r: FrontRequest) => boolean, times: number, at: 'head' | 'body'): void;
  /** Requests left stalled so far. */
  stalled: number;
  /** Every request seen, with the status answered. */
  log: Array<{ method: string; url: string; status: number; injected?: string; checksum?: boolean }>;
  close(): Promise<void>;
}

function s3ErrorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>front</RequestId></Error>`;
}

export async function startS3Front(targetPort: number): Promise<S3Front> {
  const faults: Array<{ match: (r: FrontRequest) => boolean; left: number; status: number; code: string }> = [];
  const stalls: Array<{ match: (r: FrontRequest) => boolean; left: number; at: 'head' | 'body' }> = [];
  const front: S3Front = {
    port: 0,
    location: (bucket, prefix = '') => `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(`http://127.0.0.1:${front.port}`)}&path-style=true`,
    fail(match, times, status, code) {
      faults.push({ match, left: times, status, code });
    },
    stall(match, times, at) {
      stalls.push({ match, left: times, at });
    },
    stalled: 0,
    damageUploads: 0,
    validateChecksums: false,
    ignoreConditional: false,
    delay: null,
    damageDownloads: 0,
    cutDownloads: 0,
    log: [],
    close: async () => undefined,
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      const r: FrontRequest = { method: req.method!, url: req.url!, headers: req.headers };
      const answer = (status: number, code: string, message: string): void => {
        front.log.push({ method: r.method, url: r.url, status, injected: code, checksum: typeof req.headers['x-amz-checksum-sha256'] === 'string' });
        const xml = s3ErrorXml(code, message);
        res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml), 'x-amz-request-id': 'front' });
        res.end(xml);
      };
      const st = stalls.find((x) => x.left > 0 && x.match(r));
      if (st) {
        st.left--;
        front.stalled++;
        if (st.at === 'head') {
          front.log.push({ method: r.method, url: r.url, status: 0, injected: 'stall-head' });
          return; // no answer; the connection stays open
        }
      }
      const f = faults.find((x) => x.left > 0 && x.match(r));
      if (f) {
        f.left--;
        answer(f.status, f.code, `injected by the test front`);
        return;
      }
      const claimed = req.headers['x-amz-checksum-sha256'];
      if (typeof claimed === 'string' && body.length > 0 && front.damageUploads > 0) {
        front.damageUploads--;
        body = Buffer.from(body);
        body[Math.floor(body.length / 2)] ^= 0x01;
      }
      if (front.validateChecksums && typeof claimed === 'string' && createHash('sha256').update(body).digest('base64') !== claimed) {
        answer(400, 'BadDigest', 'The SHA256 you specified did not match the calculated checksum.');
        return;
      }
      const d = front.delay;
      if (d && d.match(r)) {
        d.seen?.(r);
        setTimeout(() => forward(body), d.ms);
        return;
      }
      forward(body, st?.at === 'body');
    });
    const forward = (body: Buffer, stallBody = false): void => {
      const r: FrontRequest = { method: req.method!, url: req.url!, headers: req.headers };
      const claimed = req.headers['x-amz-checksum-sha256'];
      const headers = { ...req.headers };
      if (front.ignoreConditional) delete headers['if-none-match'];
      const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers }, (ur) => {
        const status = ur.statusCode ?? 502;
        front.log.push({ method: r.method, url: r.url, status, checksum: typeof claimed === 'string' });
        if (stallBody) {
          const parts: Buffer[] = [];
          ur.on('data', (c: Buffer) => parts.push(c));
          ur.on('end', () => {
            const b = Buffer.concat(parts);
            res.writeHead(status, ur.headers);
            res.write(b.subarray(0, Math.floor(b.length / 2))); // then silence
          });
          return;
        }
        const download = r.method === 'GET' && (status === 200 || status === 206) && !/[?&](list-type|uploads|location|versioning)/.test(r.url) && Number(ur.headers['content-length'] ?? 0) > 64;
        if (download && (front.damageDownloads > 0 || front.cutDownloads > 0)) {
          const cut = front.cutDownloads > 0;
          if (cut) front.cutDownloads--;
          else front.damageDownloads--;
          const parts: Buffer[] = [];
          ur.on('data', (c: Buffer) => parts.push(c));
          ur.on('end', () => {
            const b = Buffer.concat(parts);
            res.writeHead(status, ur.headers);
            if (cut) {
              res.write(b.subarray(0, Math.floor(b.length / 2)), () => res.socket?.resetAndDestroy());
              return;
            }
            b[Math.floor(b.length / 2)] ^= 0x01;
            res.end(b);
          });
          return;
        }
        res.writeHead(status, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => res.socket?.destroy());
      up.end(body);
    };
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.port = (server.address() as AddressInfo).port;
  front.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return front;
}

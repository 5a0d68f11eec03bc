import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { ioError } from './fs';

/** SHA-256 (lowercase hex) of bytes or a string. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA-256 (lowercase hex) and size of a file, streamed; a failing read is an I/O error naming the file. */
export async function fileSha256(file: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  try {
    for await (const c of createReadStream(file)) {
      h.update(c as Buffer);
      size += (c as Buffer).length;
    }
  } catch (e) {
    throw ioError(e, file, 'read');
  }
  return { sha256: h.digest('hex'), size };
}

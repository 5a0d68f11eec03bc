/**
 * Made the frozen store version 1 examples in ./v1 ONCE; never run it again over them (a new store
 * version gets its own folder). Each store holds one snapshot ingested from a frozen format_version
 * 1 archive (test/format/frozen/v1/): `plain/` from plain.avsnap, `passphrase/` (encrypted, scrypt
 * N = 1024, the frozen archives' public example passphrase) from passphrase.avsnap. Small packs
 * (16 KiB) so that each store has several. `expected.json` records the snapshot ids and the cut
 * lengths of the FastCDC rule on a fixed byte stream.
 *
 *   npx tsx test/vault/frozen-store/make-v1.ts
 */
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { keyFromPassphrase } from '../../../src/format/crypto';
import { LocalStore } from '../../../src/vault/remote/store';
import { Chunker } from '../../../src/vault/store/chunker';
import { ingestArchive, initStore, openRepo } from '../../../src/vault/store/repo';
import { FROZEN_V1 } from '../../format/frozen/expected';

const HERE = path.join(__dirname, 'v1');
const ARCHIVES = path.join(__dirname, '..', '..', 'format', 'frozen', 'v1');

/** 1 MiB of SHA-256 counter-mode bytes: the fixed input of the FastCDC check. */
export function fixedBytes(): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < 32768; i++) parts.push(createHash('sha256').update(`agent-vault/frozen-bytes/${i}`).digest());
  return Buffer.concat(parts);
}

export function cdcLengths(b: Buffer): number[] {
  const c = new Chunker('bytes');
  return [...c.push(b), ...c.end()].map((x) => x.length);
}

async function main(): Promise<void> {
  if (existsSync(path.join(HERE, 'expected.json'))) throw new Error(`${HERE} exists: frozen examples are never regenerated`);
  const plain = new LocalStore(path.join(HERE, 'plain'));
  await initStore(plain, { packSize: 16384 });
  const p = await ingestArchive(await openRepo(plain), path.join(ARCHIVES, 'plain.avsnap'), { time: FROZEN_V1.createdAt });
  const key = await keyFromPassphrase(FROZEN_V1.passphrase, { scrypt: FROZEN_V1.scrypt });
  const enc = new LocalStore(path.join(HERE, 'passphrase'));
  await initStore(enc, { key, packSize: 16384 });
  const e = await ingestArchive(await openRepo(enc, { passphrase: FROZEN_V1.passphrase }), path.join(ARCHIVES, 'passphrase.avsnap'), {
    time: FROZEN_V1.createdAt,
    decrypt: { passphrase: FROZEN_V1.passphrase },
  });
  const expected = {
    plain: { archive: 'plain.avsnap', snapshot: p.snapshotId },
    passphrase: { archive: 'passphrase.avsnap', snapshot: e.snapshotId },
    fastcdc_lengths: cdcLengths(fixedBytes()),
  };
  writeFileSync(path.join(HERE, 'expected.json'), JSON.stringify(expected, null, 2) + '\n');
  console.log(expected);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

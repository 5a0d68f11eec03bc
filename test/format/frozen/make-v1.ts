/**
 * Writes the frozen example archives of format_version 1 (test/format/frozen/v1/) and their
 * expected contents. Run ONCE, when a format version is released:
 *
 *   npx tsx test/format/frozen/make-v1.ts
 *
 * and never again for v1: the committed files are the contract. test/format/frozen.test.ts reads
 * them with the current code, so any change that breaks old archives (an HKDF info string, a key
 * id, an entry layout, a vector encoding) fails there. This script is kept to show how they were
 * made, not to refresh them.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openArchive } from '../../../src/format/archive';
import { keyFromBytes, keyFromPassphrase } from '../../../src/format/crypto';
import { openPglite } from '../../../src/db/pglite';
import { createLettaSchema, DEFAULT_ORG_ID } from '../../../src/letta/ddl';
import { exportAgents } from '../../../src/letta/export';
import { addSyntheticPassages, seedFixtures } from '../../vault/letta-data';
import { FROZEN_V1 } from './expected';

const OUT = path.join(__dirname, 'v1');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'frozen-v1-'));
  const db = await openPglite({ dataDir: path.join(dir, 'db') });
  try {
    await createLettaSchema(db);
    const [agentId] = await seedFixtures(db, [FROZEN_V1.fixture]);
    await addSyntheticPassages(db, agentId, FROZEN_V1.passages, 'frozen-v1');
    await db.query(`INSERT INTO agent_environment_variables (id, key, value, organization_id, agent_id) VALUES ('agent-env-frozen-1', 'FROZEN_API_TOKEN', $1, $2, $3)`, [
      FROZEN_V1.secretValue,
      DEFAULT_ORG_ID,
      agentId,
    ]);
    const keyBytes = Buffer.from(fs.readFileSync(path.join(OUT, 'vault.key'), 'utf8').trim(), 'hex');
    const variants = [
      { file: 'plain.avsnap', encryption: undefined },
      { file: 'passphrase.avsnap', encryption: { key: await keyFromPassphrase(FROZEN_V1.passphrase, { scrypt: FROZEN_V1.scrypt }) } },
      { file: 'keyfile.avsnap', encryption: { key: keyFromBytes(keyBytes) } },
    ];
    const expected: Record<string, Record<string, string>> = {};
    for (const v of variants) {
      const out = path.join(OUT, v.file);
      await exportAgents(db, { select: { all: true }, out, overwrite: true, createdAt: FROZEN_V1.createdAt, encryption: v.encryption });
      fs.chmodSync(out, 0o644);
      const r = await openArchive(out, {
        decrypt: v.file === 'plain.avsnap' ? undefined : v.file === 'keyfile.avsnap' ? { key: keyBytes } : { passphrase: FROZEN_V1.passphrase },
        verifyEntries: true,
      });
      try {
        expected[v.file] = {};
        for (const e of r.manifest.entries) expected[v.file][e.name] = sha(await r.readEntry(e.name));
      } finally {
        await r.close();
      }
    }
    fs.writeFileSync(path.join(OUT, 'expected-entries.json'), JSON.stringify(expected, null, 2) + '\n');
    console.log(`wrote ${variants.length} archives to ${OUT}`);
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

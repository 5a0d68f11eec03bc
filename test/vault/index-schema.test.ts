/**
 * The vault index format (schemas/vault-index.schema.json, docs/FORMAT.md Part III): every index
 * the code writes — by a backup-style write and by `rebuild-index` — validates against the schema,
 * and the schema refuses what the reader refuses.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { packAgentFile } from '../../src/format/pack';
import { addSnapshotToVault } from '../../src/vault/catalog';
import { rebuildIndex } from '../../src/vault/reconcile';
import { parseIndexText } from '../../src/vault/vault';
import { REPO_ROOT } from '../helpers/paths';
import { fixturePath } from './letta-data';
import { makeTmpRoot } from './helpers';

describe('vault: the index format (schemas/vault-index.schema.json)', function () {
  this.timeout(60000);
  const tmp = makeTmpRoot('index-schema');
  after(() => tmp.cleanup());
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  const schema = ajv.compile(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'schemas', 'vault-index.schema.json'), 'utf8')));
  // a plain boolean check (the compiled function is a type guard that would narrow to unknown)
  const validate = Object.assign((v: unknown): boolean => schema(v), {
    get errors() {
      return schema.errors;
    },
  });

  it('the index written by a snapshot write and by rebuild-index validates', async () => {
    const vault = tmp.dir('v');
    for (const f of ['memgpt-agent.v2-double-encoded.af', 'outreach-workflow-agent.v1.af']) {
      await addSnapshotToVault(vault, (dest) => packAgentFile(fixturePath(f), dest), { command: 'test' });
    }
    const written = JSON.parse(fs.readFileSync(path.join(vault, 'vault.json'), 'utf8'));
    assert.ok(validate(written), JSON.stringify(validate.errors));
    assert.equal(written.snapshots.length, 2);
    fs.rmSync(path.join(vault, 'vault.json'));
    await rebuildIndex(vault, {});
    const rebuilt = JSON.parse(fs.readFileSync(path.join(vault, 'vault.json'), 'utf8'));
    assert.ok(validate(rebuilt), JSON.stringify(validate.errors));
    assert.deepEqual(rebuilt.snapshots.map((s: { sha256: string }) => s.sha256).sort(), written.snapshots.map((s: { sha256: string }) => s.sha256).sort());
  });

  it('refuses what the reader refuses: wrong format, a path outside the vault, an incomplete snapshot', () => {
    const base = { format: 'agent-vault-index', version: 1, created_at: '2026-12-04T00:00:00.000Z', kdf: null, snapshots: [] as unknown[] };
    const snap = { id: '2026-12-04T000000Z-abcdef', file: 'snapshots/2026-12-04T000000Z-abcdef.avsnap', created_at: '2026-12-04T00:00:00.000Z', agents: [] };
    assert.ok(validate({ ...base, snapshots: [snap] }));
    for (const bad of [
      { ...base, format: 'something-else' },
      { ...base, snapshots: [{ ...snap, file: '../outside.avsnap' }] },
      { ...base, snapshots: [{ ...snap, file: '/abs.avsnap' }] },
      { ...base, snapshots: [{ id: snap.id, file: snap.file }] },
    ]) {
      assert.equal(validate(bad), false, JSON.stringify(bad));
      assert.throws(() => parseIndexText(JSON.stringify(bad), 'vault.json'));
    }
  });
});

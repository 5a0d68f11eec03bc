import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bucketOf, isoWeek, planRetention, type RetentionPolicy, type RetentionSnapshot } from '../../src/vault/retention';
import { pruneVault } from '../../src/vault/prune';
import { emptyIndex, readIndex, writeIndex, ensureVaultDirs, type SnapshotRecord } from '../../src/vault/vault';
import { createHash } from 'node:crypto';
import { packAgentFile } from '../../src/format/pack';
import { makeTmpRoot, rejectsWith } from './helpers';
import { errorHints } from '../../src/cli/exit';
import { fixturePath } from './letta-data';

const DAY = 86400_000;
const START = Date.UTC(2025, 0, 1, 12, 0, 0); // 2025-01-01T12:00Z

function daily(n: number, agents: (i: number) => string[] = () => ['agent-a']): RetentionSnapshot[] {
  return Array.from({ length: n }, (_, i) => ({ id: `s${String(i).padStart(4, '0')}`, created_at: new Date(START + i * DAY).toISOString(), agents: agents(i) }));
}

const date = (s: { created_at: string }): string => s.created_at.slice(0, 10);

/** Independent formulation: per rule, the newest snapshot of each of the n newest non-empty buckets. */
function reference(snaps: RetentionSnapshot[], p: RetentionPolicy): Set<string> {
  const keep = new Set<string>();
  const byNewest = [...snaps].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  byNewest.slice(0, p.keepLast ?? 0).forEach((s) => keep.add(s.id));
  const rules: Array<['daily' | 'weekly' | 'monthly' | 'yearly', number | undefined]> = [
    ['daily', p.keepDaily],
    ['weekly', p.keepWeekly],
    ['monthly', p.keepMonthly],
    ['yearly', p.keepYearly],
  ];
  for (const [rule, n] of rules) {
    const buckets = new Map<string, RetentionSnapshot>();
    for (const s of byNewest) {
      const b = bucketOf(rule, new Date(s.created_at));
      if (!buckets.has(b)) buckets.set(b, s); // first seen = newest
    }
    [...buckets.values()].slice(0, n ?? 0).forEach((s) => keep.add(s.id));
  }
  return keep;
}

describe('vault: retention (grandfather-father-son)', () => {
  const policy: RetentionPolicy = { keepLast: 5, keepDaily: 14, keepWeekly: 8, keepMonthly: 12 };

  it('ISO weeks and buckets are calendar periods in UTC', () => {
    assert.equal(isoWeek(new Date('2026-01-01T00:00:00Z')), '2026-W01'); // a Thursday
    assert.equal(isoWeek(new Date('2025-12-29T00:00:00Z')), '2026-W01'); // Monday of that week
    assert.equal(isoWeek(new Date('2025-12-28T23:59:59Z')), '2025-W52'); // the Sunday before
    assert.equal(isoWeek(new Date('2021-01-03T12:00:00Z')), '2020-W53');
    assert.equal(bucketOf('daily', new Date('2026-03-01T23:59:59.999Z')), '2026-03-01');
    assert.equal(bucketOf('monthly', new Date('2026-03-01T00:00:00Z')), '2026-03');
    assert.equal(bucketOf('yearly', new Date('2026-03-01T00:00:00Z')), '2026');
  });

  it('400 daily snapshots: keeps exactly the expected 29 (14 daily, 8 weekly, 12 monthly, 5 last)', () => {
    const snaps = daily(400);
    assert.equal(date(snaps[399]), '2026-02-04'); // a Wednesday
    const plan = planRetention(snaps, policy);
    const kept = plan.keep.map(date).sort();
    const expected = [
      // monthly: the newest snapshot of each of the 12 newest months (the 10 not kept otherwise)
      '2025-03-31',
      '2025-04-30',
      '2025-05-31',
      '2025-06-30',
      '2025-07-31',
      '2025-08-31',
      '2025-09-30',
      '2025-10-31',
      '2025-11-30',
      // weekly: the Sundays of the 8 newest ISO weeks (2026-W06 ends with 02-04 itself)
      '2025-12-21',
      '2025-12-28',
      '2025-12-31', // monthly (December)
      '2026-01-04',
      '2026-01-11',
      '2026-01-18',
      // daily: the 14 newest days (include the weekly 01-25, 02-01, 02-04 and the monthly 01-31, 02-04)
      '2026-01-22',
      '2026-01-23',
      '2026-01-24',
      '2026-01-25',
      '2026-01-26',
      '2026-01-27',
      '2026-01-28',
      '2026-01-29',
      '2026-01-30',
      '2026-01-31',
      '2026-02-01',
      '2026-02-02',
      '2026-02-03',
      '2026-02-04',
    ];
    assert.deepEqual(kept, expected);
    assert.equal(plan.keep.length, 29);
    assert.equal(plan.remove.length, 371);
    assert.deepEqual(new Set(plan.keep.map((d) => d.id)), reference(snaps, policy));
    // reasons: each rule that keeps a snapshot is named with its bucket
    const byDate = new Map(plan.decisions.map((d) => [date(d), d]));
    const rules = (d: string): string[] => byDate.get(d)!.reasons.map((r) => `${r.rule} ${r.bucket}`);
    assert.deepEqual(rules('2026-02-04'), ['last #1', 'daily 2026-02-04', 'weekly 2026-W06', 'monthly 2026-02']);
    assert.deepEqual(rules('2026-01-31'), ['last #5', 'daily 2026-01-31', 'monthly 2026-01']);
    assert.deepEqual(rules('2026-01-30'), ['daily 2026-01-30']);
    assert.deepEqual(rules('2025-12-21'), ['weekly 2025-W51']);
    assert.deepEqual(rules('2025-03-31'), ['monthly 2025-03']);
    assert.deepEqual(byDate.get('2025-03-30')!.reasons, []);
    assert.equal(byDate.get('2025-03-30')!.keep, false);
  });

  it('counts only periods that have snapshots (gaps do not use up the policy) and keeps the newest of several per day', () => {
    // 400 days, but nothing in a 40-day outage, and three runs on some days
    const snaps: RetentionSnapshot[] = [];
    for (let i = 0; i < 400; i++) {
      if (i >= 350 && i < 390) continue;
      const runs = i % 7 === 0 ? 3 : 1;
      for (let r = 0; r < runs; r++) snaps.push({ id: `s${i}-${r}`, created_at: new Date(START + i * DAY + r * 3600_000).toISOString(), agents: ['agent-a'] });
    }
    const p: RetentionPolicy = { keepDaily: 14, keepWeekly: 8, keepMonthly: 12, keepYearly: 3 };
    const plan = planRetention(snaps, p);
    assert.deepEqual(new Set(plan.keep.map((d) => d.id)), reference(snaps, p));
    const dailyKept = plan.keep.filter((d) => d.reasons.some((r) => r.rule === 'daily'));
    assert.equal(dailyKept.length, 14, 'fourteen days with snapshots, reaching back over the outage');
    assert.equal(new Set(dailyKept.map(date)).size, 14);
    // of a day with three runs, the latest is the one kept
    for (const d of dailyKept) {
      const sameDay = snaps.filter((s) => date(s) === date(d));
      assert.equal(
        d.created_at,
        sameDay
          .map((s) => s.created_at)
          .sort()
          .pop(),
      );
    }
    assert.deepEqual(
      plan.keep.filter((d) => d.reasons.some((r) => r.rule === 'yearly')).map(date),
      ['2026-02-04', '2025-12-16'],
      'two years have snapshots; the last day of 2025 with one is 12-16 (before the outage)',
    );
  });

  it('is applied per agent and never deletes the last snapshot of an agent', () => {
    // agent-b is only in the first 30 snapshots (deleted from Letta a year ago); agent-c only in one old snapshot
    const snaps = daily(400, (i) => (i < 30 ? ['agent-a', 'agent-b'] : i === 100 ? ['agent-a', 'agent-c'] : ['agent-a']));
    const p: RetentionPolicy = { keepDaily: 7 };
    const plan = planRetention(snaps, p);
    const kept = new Set(plan.keep.map(date));
    // agent-a: its 7 newest days; agent-b: its own 7 newest days (2025-01-24 … 01-30); agent-c: its only snapshot
    const expected = new Set<string>();
    for (let i = 393; i < 400; i++) expected.add(date(snaps[i]));
    for (let i = 23; i < 30; i++) expected.add(date(snaps[i]));
    expected.add(date(snaps[100]));
    assert.deepEqual(kept, expected);
    const c = plan.decisions.find((d) => d.id === snaps[100].id)!;
    assert.deepEqual(
      c.reasons.map((r) => [r.rule, r.groups]),
      [['daily', ['agent:agent-c']]],
    );
    // with only keep-last 1, the newest snapshot of every agent still survives
    const last1 = planRetention(snaps, { keepLast: 1 });
    assert.deepEqual(last1.keep.map((d) => d.id).sort(), [snaps[29].id, snaps[100].id, snaps[399].id].sort());
    assert.deepEqual(
      last1.decisions.find((d) => d.id === snaps[29].id)!.reasons.map((r) => [r.rule, r.groups]),
      [['last', ['agent:agent-b']]],
    );
  });

  it('refuses a policy without rules and negative counts', async () => {
    const none = await rejectsWith(async () => planRetention(daily(3), {}), 'usage', /no retention rule given/);
    // the library names its policy keys; what the CLI prints (message + hints) names the flags
    assert.doesNotMatch(none.message, /--/);
    assert.match(
      [none.message, ...errorHints(none)].join('\n'),
      /\npass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly \(or set "retention" in the config\)/,
    );
    await rejectsWith(async () => planRetention(daily(3), { keepDaily: 0, keepLast: 0 }), 'usage', /no retention rule given/);
    const neg = await rejectsWith(async () => planRetention(daily(3), { keepDaily: -1 }), 'usage', /retention rule keepDaily must be a non-negative integer, got -1/);
    assert.match(errorHints(neg).join('\n'), /--keep-daily/);
  });

  describe('pruneVault on a vault of 400 daily snapshots', () => {
    const tmp = makeTmpRoot('prune');
    after(() => tmp.cleanup());

    // prune counts only snapshots that verify (size, sha256, manifest): every one is a real archive
    let bytes = 0;
    async function makeVault(): Promise<{ dir: string; recs: SnapshotRecord[] }> {
      const dir = tmp.dir('vault');
      await ensureVaultDirs(dir);
      const one = path.join(dir, 'one.avsnap');
      const packed = await packAgentFile(fixturePath('memgpt-agent.v2-double-encoded.af'), one);
      const data = fs.readFileSync(one);
      fs.rmSync(one);
      bytes = data.length;
      const sha256 = createHash('sha256').update(data).digest('hex');
      const agent = packed.manifest.agents[0];
      const index = emptyIndex();
      for (const s of daily(400)) {
        const file = `snapshots/${s.id}.avsnap`;
        fs.writeFileSync(path.join(dir, file), data);
        index.snapshots.push({
          id: s.id,
          file,
          created_at: s.created_at,
          bytes,
          sha256,
          encrypted: false,
          agents: [{ id: agent.id, name: agent.name }],
          collections: [],
          probes: 0,
          secrets: false,
          tool_version: 'test',
        });
      }
      await writeIndex(dir, index);
      return { dir, recs: index.snapshots };
    }

    it('--dry-run deletes nothing; a real run deletes exactly the others, index first', async () => {
      const { dir } = await makeVault();
      const dry = await pruneVault(dir, { policy, dryRun: true });
      assert.equal(dry.kept.length, 29);
      assert.equal(dry.removed.length, 371);
      assert.equal(fs.readdirSync(path.join(dir, 'snapshots')).length, 400);
      assert.equal((await readIndex(dir)).snapshots.length, 400);

      const res = await pruneVault(dir, { policy });
      assert.equal(res.removed.length, 371);
      const files = fs.readdirSync(path.join(dir, 'snapshots')).sort();
      const index = await readIndex(dir);
      assert.deepEqual(files, index.snapshots.map((s) => path.basename(s.file)).sort());
      assert.deepEqual(index.snapshots.map(date).sort(), res.kept.map(date).sort());
      assert.equal(index.snapshots.length, 29);
      assert.equal(res.freedBytes, 371 * bytes);
      // idempotent
      const again = await pruneVault(dir, { policy });
      assert.equal(again.removed.length, 0);
      const log = fs
        .readFileSync(path.join(dir, 'runs.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.deepEqual(
        log.map((l) => [l.command, l.ok, (l.removed as string[]).length]),
        [
          ['prune', true, 371],
          ['prune', true, 0],
        ],
      );
    });
  });
});

/*
 * The PostgreSQL the extension tests run against (runner side: test/extension/run.ts and the e2e
 * tests start it before VS Code and stop it after): a throwaway PostgreSQL 15 + pgvector cluster
 * (test/helpers/pgcluster.ts) with
 *   - a source database with Letta's schema and two real agents restored from the fixtures
 *     (loop.v2.af "Loop", lettabot.v2.af "LettaBot"),
 *   - an empty target database with Letta's schema (restores go there),
 *   - a role `av_secret` that must log in with a password (scram-sha-256 in pg_hba.conf; the
 *     cluster trusts everyone else), so a test can prove the password VS Code keeps in
 *     SecretStorage is the one that is sent.
 * The extension host gets the coordinates as JSON in AGENT_VAULT_EXT_TEST_PG.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Client } from 'pg';
import { openPg } from '../../src/db/pg';
import { createLettaSchema } from '../../src/letta/ddl';
import { restoreAgents } from '../../src/letta/restore';
import { startTestPostgres, type TestPostgres } from '../helpers/pgcluster';
import { FIXTURES_DIR } from '../helpers/paths';

export const ENV_NAME = 'AGENT_VAULT_EXT_TEST_PG';
export const SEED_FIXTURES = ['loop.v2.af', 'lettabot.v2.af'];

export interface ExtTestPg {
  host: string;
  port: number;
  /** trusted superuser */
  user: string;
  source: string;
  target: string;
  secretUser: string;
  secretPassword: string;
  /** false on an external server (AGENT_VAULT_TEST_PG_URL), where pg_hba.conf is not ours */
  passwordEnforced: boolean;
}

export interface StartedPg {
  info: ExtTestPg;
  server: TestPostgres;
  urlOf(database: string): string;
  stop(): Promise<void>;
}

async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function startExtensionTestPg(): Promise<StartedPg> {
  const server = await startTestPostgres();
  try {
    const admin = new URL(server.adminUrl);
    const urlOf = (db: string) => {
      const u = new URL(server.adminUrl);
      u.pathname = `/${db}`;
      return u.toString();
    };
    const tag = `${process.pid}_${Date.now().toString(36)}`;
    const { name: source } = await server.createDatabase({ name: `av_ext_src_${tag}` });
    const { name: target } = await server.createDatabase({ name: `av_ext_dst_${tag}` });
    for (const [db, seed] of [
      [source, true],
      [target, false],
    ] as const) {
      const d = await openPg({ url: urlOf(db) });
      try {
        await createLettaSchema(d);
        if (seed) for (const f of SEED_FIXTURES) await restoreAgents(d, path.join(FIXTURES_DIR, f));
      } finally {
        await d.close();
      }
    }
    const secretUser = 'av_secret';
    const secretPassword = `pw-${randomBytes(9).toString('base64url')}`;
    let passwordEnforced = false;
    await withClient(server.adminUrl, async (c) => {
      await c.query(`DROP ROLE IF EXISTS ${secretUser}`).catch(() => undefined);
      await c.query(`CREATE ROLE ${secretUser} LOGIN SUPERUSER PASSWORD '${secretPassword}'`);
      if (server.kind === 'cluster') {
        const dir = (await c.query<{ data_directory: string }>('SHOW data_directory')).rows[0].data_directory;
        const hba = path.join(dir, 'pg_hba.conf');
        const old = await fsp.readFile(hba, 'utf8');
        const lines = [`host all ${secretUser} 127.0.0.1/32 scram-sha-256`, `host all ${secretUser} ::1/128 scram-sha-256`];
        await fsp.writeFile(hba, `${lines.join('\n')}\n${old}`);
        await c.query('SELECT pg_reload_conf()');
        passwordEnforced = true;
      }
    });
    if (passwordEnforced) {
      // prove it: no password is refused now
      const refused = await withClient(`postgres://${secretUser}@${admin.host}/${source}`, async () => false).catch(() => true);
      if (!refused) throw new Error('pg_hba.conf change did not take effect: av_secret logs in without a password');
    }
    const info: ExtTestPg = {
      host: admin.hostname,
      port: Number(admin.port),
      user: decodeURIComponent(admin.username) || 'postgres',
      source,
      target,
      secretUser,
      secretPassword,
      passwordEnforced,
    };
    return { info, server, urlOf, stop: () => server.stop() };
  } catch (e) {
    await server.stop().catch(() => undefined);
    throw e;
  }
}

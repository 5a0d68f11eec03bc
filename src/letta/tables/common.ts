/**
 * What every per-table module (./<table>.ts) shares: small value helpers, the context a table's
 * restore step writes with (WriteContext) and the context its plan step assigns ids with
 * (PlanContext). A table module holds its columns, row → `.af` (export) and `.af` → row (restore);
 * ./index.ts lists the modules and derives the restore steps from LETTA_TABLES (../ddl.ts).
 */
import { AgentVaultError } from '../../core/errors';
import { isObj as isJsonObject } from '../../core/json';
import type { Queryable } from '../../db/types';
import type { LettaTable } from '../ddl';
import { qi, type ColumnInfo } from '../sql';
import type { Assign, SourceModel, SrcAgent, SrcObject } from '../restore/model';
import type { RestoreStep } from './index';
import type { RestoreOptions, RestorePlan } from '../restore/types';

export type Obj = Record<string, any>;

/** core/json's isObj, narrowing to the rows and .af objects this mapping reads freely. */
/**
 * The columns every Letta table row carries from its ORM base (Letta's CommonSqlalchemyMetaMixins,
 * letta/orm/base.py), in the order Letta declares them; `organization_id` (OrganizationMixin) is not
 * among them, because some tables lack it.
 */
export const ORM_COLUMNS = ['created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id'] as const;

export const isObj: (v: unknown) => v is Obj = isJsonObject;
export const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
export const num = (v: unknown): number | null => (v === null || v === undefined || v === '' ? null : Number.isFinite(Number(v)) ? Number(v) : null);

export function dedupe<T extends Obj>(rows: T[]): T[] {
  const seen = new Set<string>();
  return rows.filter((r) => {
    const k = JSON.stringify(r);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export function restoreInvalid(where: string, message: string, pointer?: string): AgentVaultError {
  return new AgentVaultError('restore-invalid', `${where}: ${message}`, { location: { file: where, pointer }, kind: 'failed' });
}

/** Extra columns of a table that Letta's .af has no field for (kept in agent_vault.rows), from a row. */
export function pickColumns(columns: readonly string[], row: Obj): Obj | undefined {
  const out: Obj = {};
  for (const c of columns) if (row[c] !== null && row[c] !== undefined) out[c] = row[c];
  return Object.keys(out).length ? out : undefined;
}

/** What a table's restore step writes with (one per restore; built by ../restore/write.ts). */
export interface WriteContext {
  tx: Queryable;
  model: SourceModel;
  A: Assign;
  restored: SrcAgent[];
  plan: RestorePlan;
  org: string;
  user: string;
  opts: RestoreOptions;
  catalog: Map<string, ColumnInfo[]>;
  rows: Partial<Record<RestoreStep, number>>;
  /** is_deleted, organization_id and the acting user, as every Letta ORM row has them */
  base: { is_deleted: false; organization_id: string; _created_by_id: string; _last_updated_by_id: string };
  stamps(extra: Obj, fallback?: unknown): { created_at: unknown; updated_at: unknown };
  /** created_at / updated_at defaults for rows that carry none */
  now: { created_at: string; updated_at: string };
  /** the original id unless new ids are asked for */
  newIdsOr(id: string | undefined): string | undefined;
  /** awaits onStep */
  step(s: RestoreStep): Promise<void>;
  /** a set-based insert of one table (its step first), counted in rows */
  ins(table: RestoreStep, columns: string[], data: Iterable<Obj>, o?: { defaults?: Record<string, string>; onConflict?: string }): Promise<void>;
  /** agent file id → message file id → target id (referenced messages), set by the agents step */
  msgMaps: Map<string, Map<string, string>>;
  /** the identities of the restored agents by their id (first one wins) */
  identities: Map<string, Obj>;
}

/** What a table's plan step assigns target ids with (inside computePlan, ../restore/plan.ts). */
export interface PlanContext {
  tx: Queryable;
  model: SourceModel;
  opts: RestoreOptions;
  org: string;
  newIds: boolean;
  restored: SrcAgent[];
  assign: Assign;
  warnings: string[];
  /** every agent of the source is restored (no selection) */
  allSelected: boolean;
  wantBlocks: Set<string>;
  wantTools: Set<string>;
  wantSources: Set<string>;
  wantFiles: Set<string>;
  wantGroups: SrcObject[];
  /** ids a replace deletes first (free to reuse) */
  freedBlocks: Set<string>;
  freedGroups: Set<string>;
  freedArchives: Set<string>;
}

/** The ids of `table` among `ids` that exist in the target. */
export async function existing(q: Queryable, table: string, ids: Iterable<string>): Promise<Set<string>> {
  const list = [...new Set(ids)];
  if (list.length === 0) return new Set();
  const r = await q.query<{ id: string }>(`SELECT id FROM ${qi(table)} WHERE id = ANY($1::text[])`, [list]);
  return new Set(r.rows.map((x) => x.id));
}

/** The restore step of one table, or of a family of tables written together (in LETTA_TABLES order). */
export interface TableWriter<T extends readonly LettaTable[] = readonly LettaTable[]> {
  tables: T;
  write(ctx: WriteContext): Promise<void>;
}

export function tableWriter<const T extends readonly LettaTable[]>(tables: T, write: (ctx: WriteContext) => Promise<void>): TableWriter<T> {
  return { tables, write };
}

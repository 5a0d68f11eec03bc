/**
 * Letta's `agent_environment_variables` table: rows → the extension's environment list (export;
 * values are redacted in the .af, carried encrypted in secrets/ entries), and back (restore: the
 * values of an encrypted archive, or the target's own values of a replaced agent).
 */
import type { JsonObject } from '../../format/types';
import { newId } from '../sql';
import { isObj, tableWriter, type Obj, ORM_COLUMNS } from './common';

/** An environment variable as the extension carries it (no value). */
export function environmentJson(e: Obj): JsonObject {
  return { key: e.key, description: e.description, created_at: e.created_at, updated_at: e.updated_at, id: e.id };
}

export const environmentWriter = tableWriter(['agent_environment_variables'], async (ctx) => {
  const { model, A, restored, opts, base, now, ins } = ctx;
  await ins(
    'agent_environment_variables',
    ['id', 'key', 'value', 'description', ...ORM_COLUMNS, 'organization_id', 'agent_id', 'value_enc'],
    restored.flatMap((a) => {
      const keys = new Map<string, Obj>();
      const vars = isObj(a.obj.secrets) ? a.obj.secrets : isObj(a.obj.tool_exec_environment_variables) ? a.obj.tool_exec_environment_variables : {};
      for (const [k, v] of Object.entries(vars)) keys.set(k, { key: k, value: typeof v === 'string' ? v : '' });
      for (const e of a.environment) if (typeof e.key === 'string') keys.set(e.key, { ...(keys.get(e.key) ?? { value: '' }), ...e });
      // an encrypted archive carries the values (secrets/ entries); a plain one has them redacted
      const secret = a.manifest && opts.secrets !== false ? model.secrets.get(a.manifest.id) : undefined;
      for (const [k, v] of secret ?? []) keys.set(k, { ...(keys.get(k) ?? {}), key: k, description: keys.get(k)?.description ?? v.description ?? null, secret: v.value });
      const carry = A.envCarry.get(a.fileId);
      return [...keys.values()].map((e) => {
        const kept = typeof e.secret === 'string' ? undefined : carry?.get(e.key);
        return {
          id: A.keepIds.has(a.fileId) && typeof e.id === 'string' ? e.id : newId('agent-env'),
          key: e.key,
          // value_enc stays NULL: Letta encrypts it with its own server key, which this tool cannot know
          value: typeof e.secret === 'string' ? e.secret : kept ? kept.value : (e.value ?? ''),
          description: e.description ?? null,
          created_at: e.created_at ?? null,
          updated_at: e.updated_at ?? null,
          ...base,
          agent_id: A.agents.get(a.fileId),
          value_enc: kept ? kept.value_enc : null,
        };
      });
    }),
    { defaults: now },
  );
});

/**
 * The project's JSON Schemas (`schemas/<name>.schema.json`), compiled with ajv (draft 2020-12)
 * once each, on first use.
 *
 * The files are loaded with a `require` whose path is a template literal: esbuild turns that
 * into a glob and inlines every `schemas/*.schema.json` into the bundle (so `dist/` needs no
 * `schemas/` folder next to it), and under tsx/Node it is an ordinary require relative to this
 * module. Either way, any `schemas/<name>.schema.json` is found by its name.
 */
import Ajv2020 from 'ajv/dist/2020';
import type { ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { AgentVaultError, errorMessage } from '../core/errors';

/** Names of the schemas the project ships; any other `schemas/<name>.schema.json` works too. */
export type SchemaName = 'agent-file.v1' | 'agent-file.v2' | 'archive-manifest' | 'diff' | (string & {});

type SchemaObject = { $id?: string; [k: string]: unknown };

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$/;

const jsonCache = new Map<string, SchemaObject>();
const validatorCache = new Map<string, ValidateFunction>();
const addedAsDependency = new Set<string>();
let ajvInstance: Ajv2020 | undefined;

/**
 * The shared ajv instance: all errors (not just the first), `verbose` so every error carries the
 * failing data and its parent schema (whose `title` names the expected thing, e.g. "ToolRule"),
 * and the OpenAPI-style `discriminator` keyword the agent-file schemas use for tagged unions.
 */
function ajv(): Ajv2020 {
  if (!ajvInstance) {
    ajvInstance = new Ajv2020({ allErrors: true, verbose: true, discriminator: true, strict: false });
    addFormats(ajvInstance);
  }
  return ajvInstance;
}

/** The parsed JSON of `schemas/<name>.schema.json`. */
export function getSchema(name: SchemaName): SchemaObject {
  const cached = jsonCache.get(name);
  if (cached) return cached;
  if (!NAME_RE.test(name)) {
    throw new AgentVaultError('schema-missing', `"${name}" is not a schema name (expected something like "agent-file.v2")`);
  }
  let schema: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    schema = require(`../../schemas/${name}.schema.json`);
  } catch (e) {
    throw new AgentVaultError('schema-missing', `no JSON schema named "${name}" (schemas/${name}.schema.json): ${errorMessage(e)}`, { cause: e });
  }
  if (!schema || typeof schema !== 'object' || Array.isArray(schema)) {
    throw new AgentVaultError('schema-invalid', `schemas/${name}.schema.json is not a JSON object`);
  }
  jsonCache.set(name, schema as SchemaObject);
  return schema as SchemaObject;
}

/**
 * The schema name an `$id` (or a `$ref` to another file) points at: the last path segment
 * without `.schema.json` for URLs (`https://agent-vault.dev/schemas/diff.schema.json` → `diff`),
 * or the last colon-separated part of a URN (`urn:agent-vault:schema:diff` → `diff`).
 */
export function schemaNameFromId(id: string): string | undefined {
  const noFragment = id.split('#')[0];
  const m = /([A-Za-z0-9][A-Za-z0-9._-]*?)(?:\.schema\.json)?$/.exec(noFragment.split(/[/:]/).pop() ?? '');
  return m ? m[1] : undefined;
}

/**
 * The compiled validator of `schemas/<name>.schema.json` (compiled on first call, then cached).
 * Schemas may `$ref` each other by `$id`; the referenced file is loaded on demand.
 */
export function getValidator(name: SchemaName): ValidateFunction {
  const cached = validatorCache.get(name);
  if (cached) return cached;
  const schema = getSchema(name);
  const instance = ajv();
  let validate: ValidateFunction | undefined;
  for (let attempt = 0; !validate; attempt++) {
    try {
      // A schema first added as another one's dependency is already registered under its $id.
      validate = (schema.$id ? instance.getSchema(schema.$id) : undefined) ?? instance.compile(schema);
    } catch (e) {
      const missing = (e as { missingSchema?: unknown }).missingSchema;
      const dep = typeof missing === 'string' && missing ? schemaNameFromId(missing) : undefined;
      if (attempt < 20 && dep && dep !== name && !addedAsDependency.has(dep) && !validatorCache.has(dep)) {
        addedAsDependency.add(dep);
        instance.addSchema(getSchema(dep));
        continue;
      }
      if (e instanceof AgentVaultError) throw e;
      throw new AgentVaultError('schema-invalid', `schemas/${name}.schema.json does not compile: ${errorMessage(e)}`, { cause: e });
    }
  }
  validatorCache.set(name, validate);
  return validate;
}

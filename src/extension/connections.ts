/**
 * Connections to Letta databases. Host, port, database, user, schema and TLS mode live in the
 * settings (`agentVault.connections`); the password lives only in VS Code's SecretStorage, under
 * `agentVault.connection/<name>`. A connection without a stored password connects without one;
 * when the server asks for one, the user is prompted and the answer is stored (after it worked).
 */
import * as vscode from 'vscode';
import { AgentVaultError, errorMessage } from '../core/errors';
import { openPg, type PgSslMode } from '../db/pg';
import type { Db } from '../db/types';
import { affects, setting, updateSetting } from './config';

export const SECRET_PREFIX = 'agentVault.connection/';

export interface ConnectionConfig {
  name: string;
  host: string;
  port?: number;
  database: string;
  user?: string;
  /** Letta's schema (default "letta"; "public" for a server that keeps its tables there). */
  schema?: string;
  ssl?: PgSslMode;
}

const SSL_MODES: readonly PgSslMode[] = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];

/** host:port/database (user), never with a password. */
export function describeConnection(c: ConnectionConfig): string {
  return `${c.user ? `${c.user}@` : ''}${c.host}:${c.port ?? 5432}/${c.database}${c.schema && c.schema !== 'letta' ? ` (schema ${c.schema})` : ''}`;
}

function connectionUrl(c: ConnectionConfig, password: string | undefined): string {
  const auth = c.user ? `${encodeURIComponent(c.user)}${password !== undefined ? `:${encodeURIComponent(password)}` : ''}@` : '';
  const host = c.host.includes(':') && !c.host.startsWith('[') ? `[${c.host}]` : c.host;
  return `postgres://${auth}${host}:${c.port ?? 5432}/${encodeURIComponent(c.database)}`;
}

/** The server refused our credentials (wrong or missing password). */
function isAuthFailure(e: unknown): boolean {
  for (let x: unknown = e; x; x = (x as { cause?: unknown }).cause) {
    const code = (x as { code?: unknown }).code;
    if (code === '28P01' || code === '28000') return true;
    if (/password/i.test(errorMessage(x))) return true;
  }
  return false;
}

export class Connections implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly secrets: vscode.SecretStorage) {
    this.subs.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (affects(e, 'connections')) this.changed.fire();
      }),
      secrets.onDidChange((e) => {
        if (e.key.startsWith(SECRET_PREFIX)) this.changed.fire();
      }),
    );
  }

  list(): ConnectionConfig[] {
    const raw = setting('connections');
    return raw.filter((c): c is ConnectionConfig => !!c && typeof c === 'object' && typeof (c as ConnectionConfig).name === 'string');
  }

  get(name: string): ConnectionConfig {
    const c = this.list().find((x) => x.name === name);
    if (!c) throw new AgentVaultError('no-connection', `there is no database connection named "${name}"`, { hint: 'add one with "Agent Vault: Add Database Connection…"' });
    return c;
  }

  private async save(list: ConnectionConfig[]): Promise<void> {
    await updateSetting('connections', list);
  }

  /** Adds or replaces (by name) a connection; `password` (if given) goes to SecretStorage only. */
  async upsert(c: ConnectionConfig, password?: string, previousName?: string): Promise<void> {
    const clean: ConnectionConfig = { name: c.name.trim(), host: c.host.trim(), database: c.database.trim() };
    if (!clean.name || !clean.host || !clean.database) throw new AgentVaultError('usage', 'a connection needs a name, a host and a database');
    if (c.port !== undefined) clean.port = c.port;
    if (c.user) clean.user = c.user;
    if (c.schema) clean.schema = c.schema;
    if (c.ssl) clean.ssl = c.ssl;
    const old = previousName ?? clean.name;
    const list = this.list().filter((x) => x.name !== old && x.name !== clean.name);
    list.push(clean);
    await this.save(list);
    if (previousName && previousName !== clean.name) {
      const oldSecret = await this.secrets.get(SECRET_PREFIX + previousName);
      await this.secrets.delete(SECRET_PREFIX + previousName);
      if (password === undefined && oldSecret !== undefined) await this.secrets.store(SECRET_PREFIX + clean.name, oldSecret);
    }
    if (password !== undefined) await this.secrets.store(SECRET_PREFIX + clean.name, password);
  }

  async remove(name: string): Promise<void> {
    await this.save(this.list().filter((x) => x.name !== name));
    await this.secrets.delete(SECRET_PREFIX + name);
  }

  hasPassword(name: string): Thenable<boolean> {
    return this.secrets.get(SECRET_PREFIX + name).then((p) => p !== undefined);
  }

  /**
   * Opens the database. With `interactive`, a refused password (or a server that wants one) asks
   * the user for it, and stores it once the connection works. `database`: another database of the
   * same server, with the same credentials (a drill's scratch database).
   */
  async open(name: string, opts: { interactive?: boolean; database?: string } = {}): Promise<Db> {
    const c = opts.database ? { ...this.get(name), database: opts.database } : this.get(name);
    const stored = await this.secrets.get(SECRET_PREFIX + name);
    const connect = (password: string | undefined) =>
      openPg({
        url: connectionUrl(c, password),
        schema: c.schema || 'letta',
        ssl: c.ssl ? { mode: c.ssl } : undefined,
        applicationName: 'agent-vault-vscode',
        connectTimeoutMs: 15000,
        env: process.env,
      });
    try {
      return await connect(stored);
    } catch (e) {
      if (!opts.interactive || !isAuthFailure(e)) {
        if (isAuthFailure(e)) {
          throw new AgentVaultError('db-auth', `${describeConnection(c)} refused the ${stored === undefined ? 'connection without a password' : 'stored password'}`, {
            hint: `run "Agent Vault: Edit Database Connection…" to set the password of "${name}"`,
            cause: e,
          });
        }
        throw e;
      }
      const password = await vscode.window.showInputBox({
        title: `Password for ${describeConnection(c)}`,
        prompt: stored === undefined ? "The server asks for a password. It is kept in VS Code's secret storage." : 'The stored password was refused. Enter the current one.',
        password: true,
        ignoreFocusOut: true,
      });
      if (password === undefined) throw new AgentVaultError('db-auth', `no password given for ${describeConnection(c)}`, { cause: e });
      const db = await connect(password);
      await this.secrets.store(SECRET_PREFIX + name, password);
      return db;
    }
  }

  /** Runs `fn` with an open database and closes it afterwards. */
  async with<T>(name: string, fn: (db: Db, c: ConnectionConfig) => Promise<T>, opts: { interactive?: boolean } = { interactive: true }): Promise<T> {
    const db = await this.open(name, opts);
    try {
      return await fn(db, this.get(name));
    } finally {
      await db.close().catch(() => undefined);
    }
  }

  dispose(): void {
    this.changed.dispose();
    for (const s of this.subs) s.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// the add / edit form (a chain of input boxes)

export interface ConnectionForm {
  config: ConnectionConfig;
  /** undefined: keep the stored one (edit) / none (add) */
  password?: string;
}

async function ask(title: string, prompt: string, value: string | undefined, validate?: (v: string) => string | undefined, password = false): Promise<string | undefined> {
  return vscode.window.showInputBox({ title, prompt, value, password, ignoreFocusOut: true, validateInput: validate ? (v) => validate(v) ?? null : undefined });
}

/** Asks for every field; undefined when the user cancels. */
export async function connectionForm(existing: ConnectionConfig | undefined, taken: string[]): Promise<ConnectionForm | undefined> {
  const title = existing ? `Edit connection "${existing.name}"` : 'Add a Letta database connection';
  const name = await ask(title, 'Name of the connection', existing?.name ?? 'letta', (v) =>
    !v.trim() ? 'a name is needed' : taken.includes(v.trim()) && v.trim() !== existing?.name ? `"${v.trim()}" exists already` : undefined,
  );
  if (name === undefined) return undefined;
  const host = await ask(title, 'Host name or address of the PostgreSQL server', existing?.host ?? 'localhost', (v) => (v.trim() ? undefined : 'a host is needed'));
  if (host === undefined) return undefined;
  const port = await ask(title, 'Port', String(existing?.port ?? 5432), (v) => (/^\d{1,5}$/.test(v.trim()) && Number(v) > 0 && Number(v) < 65536 ? undefined : 'a port number (1-65535)'));
  if (port === undefined) return undefined;
  const database = await ask(title, 'Database name', existing?.database ?? 'letta', (v) => (v.trim() ? undefined : 'a database name is needed'));
  if (database === undefined) return undefined;
  const user = await ask(title, 'User name', existing?.user ?? 'letta');
  if (user === undefined) return undefined;
  const schema = await ask(title, "Schema holding Letta's tables", existing?.schema ?? 'letta', (v) => (v.trim() ? undefined : 'a schema is needed'));
  if (schema === undefined) return undefined;
  const sslPick = await vscode.window.showQuickPick(
    SSL_MODES.map((m) => ({ label: m, picked: m === (existing?.ssl ?? 'disable') })),
    { title, placeHolder: 'TLS mode (libpq sslmode)', ignoreFocusOut: true },
  );
  if (!sslPick) return undefined;
  const password = await ask(
    title,
    existing ? "Password (leave empty to keep the stored one; stored in VS Code's secret storage)" : "Password (stored in VS Code's secret storage; empty for none)",
    '',
    undefined,
    true,
  );
  if (password === undefined) return undefined;
  return {
    config: { name: name.trim(), host: host.trim(), port: Number(port), database: database.trim(), user: user.trim() || undefined, schema: schema.trim(), ssl: sslPick.label as PgSslMode },
    password: password === '' ? undefined : password,
  };
}

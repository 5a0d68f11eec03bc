/**
 * Webhook: one POST of a JSON result (backup failed / succeeded) with a timeout. A webhook that
 * fails is reported (run log, stderr) but never changes the outcome of the run it reports.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { AgentVaultError, errorMessage } from '../core/errors';
import { TOOL_VERSION } from '../core/version';

export type WebhookEvent = 'failure' | 'success';

export interface WebhookConfig {
  url: string;
  /** When to call it (default: failure only). */
  on?: WebhookEvent[];
  timeoutMs?: number;
  /** Fixed headers (not secret). */
  headers?: Record<string, string>;
  /** Header name → environment variable holding its value (for tokens). */
  headersFromEnv?: Record<string, string>;
}

export interface WebhookResult {
  ok: boolean;
  status?: number;
  error?: string;
  ms: number;
}

export const DEFAULT_WEBHOOK_TIMEOUT_MS = 10_000;

export function wantsWebhook(cfg: WebhookConfig | undefined, event: WebhookEvent): boolean {
  return !!cfg && (cfg.on ?? ['failure']).includes(event);
}

/** Checks the URL (http or https) up front, so a typo is reported before any backup work. */
export function checkWebhookUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new AgentVaultError('config', `webhook URL ${JSON.stringify(url)} is not a valid URL`, { kind: 'usage' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new AgentVaultError('config', `webhook URL must be http:// or https://, got ${u.protocol}`, { kind: 'usage' });
  return u;
}

/** POSTs `payload` as JSON. Resolves with the outcome; never rejects. */
export function postWebhook(cfg: WebhookConfig, payload: unknown, env: NodeJS.ProcessEnv = process.env): Promise<WebhookResult> {
  const t0 = Date.now();
  let u: URL;
  try {
    u = checkWebhookUrl(cfg.url);
  } catch (e) {
    return Promise.resolve({ ok: false, error: errorMessage(e), ms: 0 });
  }
  const body = Buffer.from(JSON.stringify(payload));
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(body.length),
    'user-agent': `agent-vault/${TOOL_VERSION}`,
    ...cfg.headers,
  };
  for (const [h, v] of Object.entries(cfg.headersFromEnv ?? {})) {
    const val = env[v];
    if (val !== undefined) headers[h] = val;
  }
  const timeout = cfg.timeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS;
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise<WebhookResult>((resolve) => {
    let settled = false;
    const done = (r: Omit<WebhookResult, 'ms'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...r, ms: Date.now() - t0 });
    };
    const req = mod.request(u, { method: 'POST', headers, agent: false }, (res) => {
      res.resume();
      res.once('end', () => {
        const status = res.statusCode ?? 0;
        done(status >= 200 && status < 300 ? { ok: true, status } : { ok: false, status, error: `the server answered HTTP ${status}` });
      });
      res.once('error', (e) => done({ ok: false, status: res.statusCode, error: errorMessage(e) }));
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`no answer within ${timeout} ms`));
    }, timeout);
    req.once('error', (e) => done({ ok: false, error: errorMessage(e) }));
    req.end(body);
  });
}

/** Redacts user info and query from a URL for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '***';
      u.password = '';
    }
    if (u.search) u.search = '?…';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

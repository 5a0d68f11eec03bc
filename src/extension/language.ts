/**
 * Diagnostics for `.af` documents (language `agentfile`): the library's validation
 * (validateAgentFileText — JSON syntax, the v1/v2 schema, and the reference checks Letta's import
 * skips: dangling ids, orphaned tool calls, duplicate labels …) shown in Problems, re-run as the
 * document changes. A `.af` opened as plain JSON (files.associations) gets only the checks that
 * the JSON language service's schema validation (contributes.jsonValidation) does not do.
 */
import * as vscode from 'vscode';
import { validateAgentFileText, type Finding, type ValidationReport } from '../format/validate';

export const LANGUAGE_ID = 'agentfile';
const SOURCE = 'agent-vault';

function isAgentFileDoc(doc: vscode.TextDocument): boolean {
  if (doc.languageId === LANGUAGE_ID) return true;
  return (doc.languageId === 'json' || doc.languageId === 'jsonc') && doc.uri.path.toLowerCase().endsWith('.af');
}

/** The range a finding points at: the JSON token at its line/column (a string, a number, a word), else one character. */
function findingRange(doc: vscode.TextDocument, f: Finding): vscode.Range {
  if (!f.line) return new vscode.Range(0, 0, 0, Math.min(1, doc.lineAt(0).text.length));
  const line = Math.min(f.line - 1, doc.lineCount - 1);
  const col = Math.max(0, (f.column ?? 1) - 1);
  const pos = new vscode.Position(line, Math.min(col, doc.lineAt(line).text.length));
  const word = doc.getWordRangeAtPosition(pos, /"(?:[^"\\]|\\.)*"|[^\s,:[\]{}"]+/);
  if (word && word.start.isEqual(pos)) return word;
  return new vscode.Range(pos, pos.translate(0, pos.character < doc.lineAt(line).text.length ? 1 : 0));
}

export function toDiagnostics(doc: vscode.TextDocument, report: ValidationReport, opts: { skipSchema?: boolean } = {}): vscode.Diagnostic[] {
  const out: vscode.Diagnostic[] = [];
  for (const f of [...report.errors, ...report.warnings]) {
    if (opts.skipSchema && f.code.startsWith('schema-')) continue;
    const d = new vscode.Diagnostic(
      findingRange(doc, f),
      `${f.message}${f.pointer && !f.message.includes(f.pointer) ? ` (at ${f.pointer})` : ''}`,
      f.severity === 'error' ? vscode.DiagnosticSeverity.Error : vscode.DiagnosticSeverity.Warning,
    );
    d.source = SOURCE;
    d.code = f.code;
    out.push(d);
  }
  return out;
}

export class AgentFileDiagnostics implements vscode.Disposable {
  readonly collection = vscode.languages.createDiagnosticCollection(LANGUAGE_ID);
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly enabled: () => boolean) {
    this.subs.push(
      vscode.workspace.onDidOpenTextDocument((d) => this.schedule(d, 0)),
      vscode.workspace.onDidChangeTextDocument((e) => this.schedule(e.document, 400)),
      vscode.workspace.onDidCloseTextDocument((d) => {
        this.cancel(d);
        this.collection.delete(d.uri);
      }),
    );
    for (const d of vscode.workspace.textDocuments) this.schedule(d, 0);
  }

  private cancel(doc: vscode.TextDocument): void {
    const key = doc.uri.toString();
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
  }

  private schedule(doc: vscode.TextDocument, delayMs: number): void {
    if (!isAgentFileDoc(doc) || !this.enabled()) return;
    this.cancel(doc);
    this.timers.set(
      doc.uri.toString(),
      setTimeout(() => {
        this.timers.delete(doc.uri.toString());
        if (!doc.isClosed) this.validate(doc);
      }, delayMs),
    );
  }

  /** Validates now and publishes the diagnostics; returns the library's report. */
  validate(doc: vscode.TextDocument): ValidationReport {
    const report = validateAgentFileText(doc.getText(), doc.uri.scheme === 'file' ? doc.uri.fsPath : doc.uri.toString());
    this.collection.set(doc.uri, toDiagnostics(doc, report, { skipSchema: doc.languageId !== LANGUAGE_ID }));
    return report;
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.collection.dispose();
    for (const s of this.subs) s.dispose();
  }
}

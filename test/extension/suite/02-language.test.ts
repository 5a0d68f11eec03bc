import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import * as oniguruma from 'vscode-oniguruma';
import * as vsctm from 'vscode-textmate';
import type { ValidationReport } from '../../../src/format/validate';
import { BROKEN_CALL_ID, BROKEN_DANGLING_ID, brokenAgentFileText } from '../test-files';
import { closeAllEditors, fixture, fixturesDir, repoRoot, waitFor, workspaceDir } from './helpers';

async function loadGrammar(): Promise<vsctm.IGrammar> {
  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve('vscode-oniguruma')), 'onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({ createOnigScanner: (p: string[]) => new oniguruma.OnigScanner(p), createOnigString: (s: string) => new oniguruma.OnigString(s) }),
    loadGrammar: async (scope) =>
      scope === 'source.agentfile' ? vsctm.parseRawGrammar(fs.readFileSync(path.join(repoRoot(), 'syntaxes', 'agentfile.tmLanguage.json'), 'utf8'), 'agentfile.tmLanguage.json') : null,
  });
  const g = await registry.loadGrammar('source.agentfile');
  assert.ok(g, 'grammar source.agentfile loads');
  return g;
}

function tokenize(g: vsctm.IGrammar, text: string): { lines: Array<Array<{ text: string; scopes: string[] }>>; end: vsctm.StateStack } {
  let state = vsctm.INITIAL;
  const lines = text.split('\n').map((line) => {
    const r = g.tokenizeLine(line, state);
    state = r.ruleStack;
    return r.tokens.map((t) => ({ text: line.slice(t.startIndex, t.endIndex), scopes: t.scopes }));
  });
  return { lines, end: state };
}

describe('.af language: grammar', () => {
  let grammar: vsctm.IGrammar;
  before(async () => {
    grammar = await loadGrammar();
  });

  it("highlights a tool's source_code as Python, escape-aware, and ends it at the closing quote", () => {
    const code = [
      '@tool',
      'def search(query: str, limit=10) -> str:',
      '    """Search "the web"."""',
      '    # a comment with a "quote" and it\'s fine',
      "    s = 'a\\'b' + f\"{query}\"",
      '    return None if limit > 0x1F else True',
    ].join('\n');
    const text = JSON.stringify({ tools: [{ name: 'search', source_code: code, json_schema: { name: 'search' } }] });
    const { lines } = tokenize(grammar, text);
    const tokens = lines[0];
    const python = tokens.filter((x) => x.scopes.includes('source.python.embedded.agentfile'));
    const scopeOf = (t: string) => python.find((x) => x.text === t)?.scopes ?? [];
    const has = (t: string, scope: string) => assert.ok(scopeOf(t).includes(scope), `"${t}" has ${scope}: ${scopeOf(t).join(' ')}`);
    has('def', 'storage.type.function.python');
    has('search', 'entity.name.function.python');
    has('return', 'keyword.control.flow.python');
    has('None', 'constant.language.python');
    has('0x1F', 'constant.numeric.python');
    has('tool', 'entity.name.function.decorator.python');
    assert.ok(
      tokens.some((t) => t.text.startsWith('#') || (t.scopes.includes('comment.line.number-sign.python') && t.text.includes('quote'))),
      'the comment is a comment',
    );
    const docstring = tokens.find((t) => t.scopes.includes('string.quoted.docstring.multi.python'));
    assert.ok(docstring && docstring.text.includes('the web'), 'the docstring (with escaped quotes inside) is one string');
    // everything from the opening quote of source_code to its closing quote is embedded Python;
    // the key after it is a JSON property again
    const after = tokens.find((t) => t.text === 'json_schema');
    assert.ok(after?.scopes.includes('support.type.property-name.json'), 'the next key is a JSON key');
    assert.ok(!after?.scopes.some((s) => s.includes('python')), 'the Python region ended at the closing quote');
    const embedded = tokens.filter((t) => t.scopes.includes('source.python.embedded.agentfile'));
    assert.equal(embedded.map((t) => t.text).join(''), JSON.stringify(code).slice(1, -1), 'the embedded region is exactly the escaped source');
  });

  it('tokenizes every fixture and ends each in the top-level state (no runaway region)', () => {
    const files = fs.readdirSync(fixturesDir()).filter((f) => f.endsWith('.af'));
    assert.equal(files.length, 24);
    for (const f of files) {
      const { end, lines } = tokenize(grammar, fs.readFileSync(path.join(fixturesDir(), f), 'utf8'));
      assert.equal(end.depth, 1, `${f} ends inside a region`);
      const invalid = lines.flat().filter((t) => t.scopes.some((s) => s.startsWith('invalid.')));
      assert.deepEqual(invalid.slice(0, 3), [], `${f} has invalid tokens`);
    }
  });
});

describe('.af language: documents and diagnostics', () => {
  afterEach(closeAllEditors);

  it('opens .af files as language "agentfile" and a valid fixture gets no errors', async () => {
    const file = path.join(workspaceDir(), 'valid.af');
    fs.copyFileSync(fixture('deep-research-agent.v2.af'), file);
    const doc = await vscode.workspace.openTextDocument(file);
    await vscode.window.showTextDocument(doc);
    assert.equal(doc.languageId, 'agentfile');
    // the validation ran (the extension activated on the language) and found no errors
    const report = await vscode.commands.executeCommand<ValidationReport>('agentVault.validateAgentFile', doc.uri);
    assert.ok(report, 'the command returns the report');
    assert.equal(report.valid, true, JSON.stringify(report.errors));
    const errors = vscode.languages.getDiagnostics(doc.uri).filter((d) => d.severity === vscode.DiagnosticSeverity.Error);
    assert.deepEqual(errors, []);
  });

  it('puts the reference checks of a broken .af into Problems, at the right lines, and updates them on edit', async () => {
    const file = path.join(workspaceDir(), 'broken.af');
    const text = brokenAgentFileText(fs.readFileSync(fixture('deep-research-agent.v2.af'), 'utf8'));
    fs.writeFileSync(file, text);
    const doc = await vscode.workspace.openTextDocument(file);
    await vscode.window.showTextDocument(doc);
    const diags = await waitFor('diagnostics of broken.af', () => {
      const d = vscode.languages.getDiagnostics(doc.uri);
      return d.length >= 2 ? d : undefined;
    });
    const lines = text.split('\n');
    const dangling = diags.find((d) => d.code === 'dangling-reference');
    assert.ok(dangling, `dangling-reference in ${diags.map((d) => d.code).join(', ')}`);
    assert.equal(dangling.severity, vscode.DiagnosticSeverity.Error);
    assert.equal(dangling.source, 'agent-vault');
    assert.match(dangling.message, new RegExp(BROKEN_DANGLING_ID));
    assert.ok(lines[dangling.range.start.line].includes(`"${BROKEN_DANGLING_ID}"`), `points at the line with ${BROKEN_DANGLING_ID}: ${lines[dangling.range.start.line]}`);
    assert.equal(doc.getText(dangling.range), `"${BROKEN_DANGLING_ID}"`, 'the range is the id string');
    const orphan = diags.find((d) => d.code === 'orphaned-tool-call');
    assert.ok(orphan, 'orphaned-tool-call reported');
    assert.match(orphan.message, new RegExp(BROKEN_CALL_ID));

    // fix the dangling id in the editor: its diagnostic goes away, the other stays
    const edit = new vscode.WorkspaceEdit();
    edit.replace(doc.uri, dangling.range, '"tool-0"');
    assert.ok(await vscode.workspace.applyEdit(edit));
    await waitFor('the dangling-reference diagnostic to go away', () => {
      const d = vscode.languages.getDiagnostics(doc.uri);
      return !d.some((x) => x.code === 'dangling-reference') && d.some((x) => x.code === 'orphaned-tool-call');
    });
    await vscode.commands.executeCommand('workbench.action.files.revert');
  });
});

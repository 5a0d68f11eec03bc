/** CLI: validate, inspect, convert, pack, unpack. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { AgentVaultError } from '../core/errors';
import { readAgentFile, toV2 } from '../format/af';
import { validateAnyPath, type ValidationReport, type Finding } from '../format/validate-any';
import { describeArchive, describeFile } from '../format/inspect';
import { writeFileAtomic } from '../core/fs';
import { packAgentFile, unpackArchive } from '../format/pack';
import { addKeyOptions, decryptFromFlags, type KeyFlags } from './keys';
import { resolveArchiveArg } from './remote-archive';
import { storeArchiveArg } from './store';
import { errorHints, exitCodeOf } from './exit';
import type { CliContext } from './context';

export function registerFormatCommands(program: Command, ctx: CliContext): void {
  addKeyOptions(
    program
      .command('validate')
      .description('Validate agent files (.af v1, v2, double-encoded v2) and snapshot archives against the schemas and reference checks')
      .argument('<files...>', 'agent files or snapshot archives')
      .option('--json', 'print one JSON report per file (an array)')
      .option('-q, --quiet', 'print only errors')
      .addHelpText(
        'after',
        '\nExit codes: 0 all valid (warnings allowed), 1 at least one invalid (or a wrong passphrase/key), 2 usage (no such file, an encrypted archive without its key), 74 I/O error (a file cannot be read).',
      ),
  ).action(async (files: string[], opts: KeyFlags & { json?: boolean; quiet?: boolean }) => {
    const reports: ValidationReport[] = [];
    let ioError = 0;
    const decrypt = await decryptFromFlags(opts, ctx.env);
    for (const f of files) {
      try {
        reports.push(await validateAnyPath(f, { decrypt }));
      } catch (e) {
        if (e instanceof AgentVaultError && (e.kind === 'usage' || e.kind === 'io')) {
          ioError = Math.max(ioError, exitCodeOf(e));
          ctx.stderr(`agent-vault: ${e.message}\n`);
          for (const h of errorHints(e)) ctx.stderr(`hint: ${h}\n`);
          reports.push({ file: f, valid: false, errors: [{ severity: 'error', code: e.code, message: e.message, pointer: '' }], warnings: [] });
        } else throw e;
      }
    }
    if (opts.json) ctx.stdout(JSON.stringify(reports, null, 2) + '\n');
    else for (const r of reports) ctx.stdout(renderReport(r, !!opts.quiet));
    ctx.exitCode = ioError ? ioError : reports.every((r) => r.valid) ? 0 : 1;
  });

  addKeyOptions(
    program
      .command('inspect')
      .description(
        'Show what an agent file or snapshot archive holds: format, Letta revision, agents and counts (an encrypted archive is described from its manifest; with its key the manifest is authenticated)',
      )
      .argument('<file>', 'agent file or snapshot archive')
      .option('--json', 'machine-readable output'),
  ).action(async (file: string, opts: KeyFlags & { json?: boolean }) => {
    const decrypt = await decryptFromFlags(opts, ctx.env);
    // a store vault's snapshot (`<vault>#<snapshot>`) is described from the store, in place
    const inPlace = await storeArchiveArg(file);
    let info;
    if (inPlace) {
      const reader = await inPlace.open(decrypt);
      await reader.close();
      info = describeArchive(reader, { container: 'Agent Vault snapshot in a store vault' });
    } else info = await describeFile(await resolveArchiveArg(file), { decrypt });
    ctx.stdout(opts.json ? JSON.stringify(info, null, 2) + '\n' : info.text);
  });

  program
    .command('convert')
    .description('Convert an agent file to Letta .af v2 (v1 is upgraded, double-encoded v2 is decoded)')
    .argument('<file>', 'agent file')
    .requiredOption('--to <version>', 'target format (only "v2")')
    .option('-o, --output <file>', 'write here instead of standard output')
    .option('--force', 'overwrite the output file if it exists')
    .action(async (file: string, opts: { to: string; output?: string; force?: boolean }) => {
      if (opts.to !== 'v2') throw new AgentVaultError('usage', `--to ${opts.to}: only "v2" is supported`, { kind: 'usage' });
      const parsed = await readAgentFile(file);
      const json = JSON.stringify(toV2(parsed), null, 2) + '\n';
      if (opts.output) {
        await writeFileAtomic(opts.output, json, { overwrite: !!opts.force });
        ctx.stderr(`wrote ${opts.output} (v2, from ${parsed.format})\n`);
      } else ctx.stdout(json);
    });

  program
    .command('pack')
    .description('Pack an agent file into a snapshot archive (one .af v2 entry per agent, checksummed)')
    .argument('<file>', 'agent file (.af v1, v2 or double-encoded v2)')
    .requiredOption('-o, --output <archive>', 'archive to write')
    .option('--force', 'overwrite the archive if it exists')
    .action(async (file: string, opts: { output: string; force?: boolean }) => {
      const res = await packAgentFile(file, opts.output, { overwrite: !!opts.force });
      ctx.stdout(`wrote ${res.path}: ${res.manifest.agents.length} agent(s), ${res.manifest.entries.length} entries, ${res.bytes} bytes\n`);
    });

  addKeyOptions(
    program
      .command('unpack')
      .description('Unpack a snapshot archive into .af v2 files (checksums verified first; an encrypted archive needs its key)')
      .argument('<archive>', 'snapshot archive')
      .requiredOption('-o, --output <dir>', 'folder to write into')
      .option('--force', 'overwrite existing files'),
  ).action(async (archive: string, opts: KeyFlags & { output: string; force?: boolean }) => {
    const res = await unpackArchive(archive, opts.output, { overwrite: !!opts.force, decrypt: await decryptFromFlags(opts, ctx.env) });
    for (const f of res.files) ctx.stdout(`wrote ${path.relative(ctx.cwd, f) || f}\n`);
  });
}

export function renderFinding(file: string | undefined, f: Finding): string {
  const where = `${file ?? '<input>'}${f.line ? `:${f.line}:${f.column ?? 1}` : ''}`;
  return `${where}: ${f.severity} [${f.code}] ${f.message}${f.pointer ? ` (at ${f.pointer})` : ''}\n`;
}

export function renderReport(r: ValidationReport, quiet: boolean): string {
  let s = '';
  if (!quiet) {
    const what = r.format ? ` (${r.format}${r.revision ? `, revision ${r.revision}` : ''}${r.version ? `, Letta ${r.version}` : ''})` : '';
    const verdict = r.valid ? (r.warnings.length ? `valid with ${r.warnings.length} warning(s)` : 'valid') : `invalid: ${r.errors.length} error(s)`;
    s += `${r.file ?? '<input>'}: ${verdict}${what}\n`;
  }
  for (const f of r.errors) s += '  ' + renderFinding(r.file, f);
  if (!quiet) for (const f of r.warnings) s += '  ' + renderFinding(r.file, f);
  return s;
}

export { fs };

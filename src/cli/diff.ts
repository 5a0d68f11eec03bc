/** CLI: `agent-vault diff <A> <B>` — the semantic diff of two agent states. */
import { Option, type Command } from 'commander';
import { diffSources, openReaderSource, type AgentStateSource } from '../diff';
import { openSideSpec } from '../diff/live';
import { renderReport, type DiffFormat } from './diff-render';
import { decryptFromFlags } from './keys';
import { resolveArchiveArg } from './remote-archive';
import { storeArchiveArg } from './store';
import type { CliContext } from './context';

/** Colour only for a terminal, and never when NO_COLOR is set (https://no-color.org). */
export function useColor(ctx: Pick<CliContext, 'env' | 'stdoutIsTTY'>): boolean {
  const env = ctx.env;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== '') return true;
  return ctx.stdoutIsTTY;
}

export function registerDiffCommands(program: Command, ctx: CliContext): void {
  program
    .command('diff')
    .description('What changed between two agent states: system prompt, memory blocks, tools, workflows, LLM and embedding configs, messages, passages, environment')
    .argument('<A>', 'the old state: snapshot archive or agent file (.af v1, v2, double-encoded v2)')
    .argument('<B>', 'the new state: snapshot archive, agent file, or a live Letta database (postgres://… URL or pglite:<dir>) for drift since A')
    .option('--agent <id-or-name>', 'only this agent (by id or name, on either side)')
    .option('--schema <name>', 'schema of a live Letta database', 'letta')
    .option('--org <id>', 'organization of a live Letta database')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'md', 'json']).default('text'))
    .option('--exit-code', 'exit with 1 when the states differ, 0 when they do not (like git diff --exit-code)')
    .addHelpText(
      'after',
      '\nAgents are matched by database id, then by name; blocks by label; tools by name; messages by id, then position.\n' +
        'Exit codes: 0 done (with --exit-code: no differences), 1 (only with --exit-code) differences found, 2 usage or I/O error.',
    )
    .action(async (a: string, b: string, opts: { agent?: string; schema: string; org?: string; format: DiffFormat; exitCode?: boolean }) => {
      const side = { agent: opts.agent, schema: opts.schema, organizationId: opts.org, env: ctx.env };
      // a store vault's snapshot (`<vault>#<snapshot>`) is read in place from the store
      const open = async (spec: string): Promise<AgentStateSource> => {
        const inPlace = await storeArchiveArg(spec);
        if (inPlace) return openReaderSource(await inPlace.open(await decryptFromFlags({}, ctx.env)));
        return openSideSpec(await resolveArchiveArg(spec), side);
      };
      const A = await open(a);
      let report;
      try {
        const B = await open(b);
        try {
          report = await diffSources(A, B, { agent: opts.agent });
        } finally {
          await B.close();
        }
      } finally {
        await A.close();
      }
      ctx.stdout(renderReport(report, opts.format, { color: opts.format === 'text' && useColor(ctx) }));
      ctx.exitCode = opts.exitCode && !report.identical ? 1 : 0;
    });
}

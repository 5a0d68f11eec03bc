/**
 * agent-vault command line. Each concern registers its commands with the one context (./context.ts);
 * this file owns process-level behaviour: exit codes, error printing (a message, never a stack),
 * and output streams.
 */
import { Command, CommanderError } from 'commander';
import { AgentVaultError, errorMessage, formatLocation } from '../core/errors';
import { registerFormatCommands } from './format';
import { TOOL_VERSION } from '../core/version';
import { registerExtraCommands } from './registry';
import { processContext, type CliContext } from './context';

import { EXIT, errorHints, exitCodeOf } from './exit';

export { EXIT };
export type { CliContext };

export function buildProgram(ctx: CliContext): Command {
  const program = new Command();
  program
    .name('agent-vault')
    .description('Back up, validate, diff and restore the state of self-hosted Letta agents.')
    .version(TOOL_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => ctx.stderr(s), writeOut: (s) => ctx.stdout(s) });
  registerFormatCommands(program, ctx);
  registerExtraCommands(program, ctx);
  // Every sub-command inherits the exit override.
  for (const c of program.commands) c.exitOverride();
  return program;
}

/** Runs one command line in `ctx` and returns its exit code (docs/CLI.md "Exit codes"). */
export async function main(argv: string[], ctx: CliContext = processContext()): Promise<number> {
  const program = buildProgram(ctx);
  ctx.exitCode = undefined;
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode ?? EXIT.ok;
  } catch (e) {
    return handleError(e, ctx);
  }
}

/** Prints an error as the user sees it (message, location, hints; a stack only for a bug with AGENT_VAULT_DEBUG) and returns its exit code. */
export function handleError(e: unknown, ctx: Pick<CliContext, 'stderr' | 'env'> = processContext()): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
    return EXIT.usage; // commander already printed the message
  }
  if (e instanceof AgentVaultError) {
    const where = formatLocation(e.location);
    const msg = e.message.includes(where) || !where ? e.message : `${e.message} (${where})`;
    ctx.stderr(`agent-vault: ${msg}\n`);
    for (const h of errorHints(e)) ctx.stderr(`hint: ${h}\n`);
    return exitCodeOf(e);
  }
  ctx.stderr(`agent-vault: internal error: ${errorMessage(e)}\n`);
  if (ctx.env.AGENT_VAULT_DEBUG && e instanceof Error && e.stack) ctx.stderr(e.stack + '\n');
  else ctx.stderr('hint: set AGENT_VAULT_DEBUG=1 to see the stack trace, and please report it\n');
  return EXIT.internal;
}

/** `agent-vault … | head` closes the pipe early: stop quietly, as Unix tools do. */
function quietOnBrokenPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

if (require.main === module) {
  quietOnBrokenPipe(process.stdout);
  quietOnBrokenPipe(process.stderr);
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => process.exit(handleError(e)),
  );
}

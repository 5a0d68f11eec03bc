/**
 * agent-vault command line. Each concern registers its commands; this file owns process-level
 * behaviour: exit codes, error printing (a message, never a stack), and output streams.
 */
import { Command, CommanderError } from 'commander';
import { AgentVaultError, errorMessage, formatLocation } from '../core/errors';
import { registerFormatCommands } from './format';
import { TOOL_VERSION } from '../core/version';
import { registerExtraCommands } from './registry';

import { EXIT, errorHints, exitCodeOf } from './exit';

export { EXIT };

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('agent-vault')
    .description('Back up, validate, diff and restore the state of self-hosted Letta agents.')
    .version(TOOL_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) });
  registerFormatCommands(program);
  registerExtraCommands(program);
  // Every sub-command inherits the exit override.
  for (const c of program.commands) c.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    return handleError(e);
  }
}

export function handleError(e: unknown): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
    return EXIT.usage; // commander already printed the message
  }
  if (e instanceof AgentVaultError) {
    const where = formatLocation(e.location);
    const msg = e.message.includes(where) || !where ? e.message : `${e.message} (${where})`;
    process.stderr.write(`agent-vault: ${msg}\n`);
    for (const h of errorHints(e)) process.stderr.write(`hint: ${h}\n`);
    return exitCodeOf(e);
  }
  process.stderr.write(`agent-vault: internal error: ${errorMessage(e)}\n`);
  if (process.env.AGENT_VAULT_DEBUG && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
  else process.stderr.write('hint: set AGENT_VAULT_DEBUG=1 to see the stack trace, and please report it\n');
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

/**
 * The system message Letta writes for an agent that has no messages.
 *
 * Letta runs an agent from its in-context messages (`agents.message_ids`), the first of which is
 * its system message; an agent with none is refused at its first step ("Agent … has no in-context
 * messages", HTTP 500: letta/agents/helpers.py). Letta's `create_agent`
 * (letta/services/agent_manager.py) therefore always writes one: role `system`, content one text
 * part holding the compiled system prompt (letta/services/helpers/agent_manager_helper.py
 * `initialize_message_sequence_async` → letta/prompts/prompt_generator.py
 * `get_system_message_from_compiled_memory`): the agent's `system` with `{CORE_MEMORY}` replaced by
 * (or, when absent, followed by two newlines and) the rendered memory blocks, two newlines and the
 * `<memory_metadata>` block. A restore of an agent whose source has no in-context message writes
 * the same (docs/RESTORE.md).
 *
 * The memory blocks are rendered as Letta's `Memory.compile` renders them (letta/schemas/memory.py):
 * with line numbers for `sleeptime_agent`, `memgpt_v2_agent` and `letta_v1_agent` on Anthropic
 * models, plainly otherwise, nothing for `react_agent` / `workflow_agent`. Tool-rule prompts and
 * folder listings are not rendered here: Letta compares the memory it compiles with the system
 * message before every step and rebuilds the message when it is not contained, so for agents with
 * those the first step completes the prompt exactly as it does after a block edit.
 */

export interface InitialMessageAgent {
  id: string;
  system: string | null;
  agent_type: string | null;
  timezone: string | null;
  llm_config: { model?: string | null; model_endpoint_type?: string | null } | null;
}

export interface InitialMessageBlock {
  label: string | null;
  value: string | null;
  description: string | null;
  limit: number | null;
  read_only: boolean | null;
}

/** letta/constants.py CORE_MEMORY_LINE_NUMBER_WARNING */
const LINE_NUMBER_WARNING = "# NOTE: Line numbers shown below (with arrows like '1→') are to help during editing. Do NOT include line number prefixes in your memory edit tool calls.";

export function renderMemoryBlocks(agent: InitialMessageAgent, blocks: InitialMessageBlock[]): string {
  const type = (agent.agent_type ?? '').toLowerCase();
  if (type === 'react_agent' || type === 'workflow_agent') return '';
  const numbered = agent.llm_config?.model_endpoint_type === 'anthropic' && ['sleeptime_agent', 'memgpt_v2_agent', 'letta_v1_agent'].includes(type);
  if (!numbered && blocks.length === 0) return '';
  let s = '<memory_blocks>\nThe following memory blocks are currently engaged in your core memory unit:\n\n';
  blocks.forEach((b, i) => {
    const label = b.label || 'block';
    const value = b.value ?? '';
    s += `<${label}>\n<description>\n${b.description ?? ''}\n</description>\n<metadata>`;
    if (b.read_only) s += '\n- read_only=true';
    s += `\n- chars_current=${value.length}\n- chars_limit=${b.limit ?? 0}\n</metadata>\n`;
    if (numbered) {
      s += `<warning>\n${LINE_NUMBER_WARNING}\n</warning>\n<value>\n`;
      if (value) value.split('\n').forEach((line, k) => (s += `${k + 1}→ ${line}\n`));
      s += '</value>\n';
    } else {
      s += `<value>\n${value}\n</value>\n`;
    }
    s += `</${label}>\n`;
    if (i !== blocks.length - 1) s += '\n';
  });
  return s + '\n</memory_blocks>';
}

/** `YYYY-MM-DD HH:MM:SS AM TZ+hhmm` in the agent's time zone, as Letta's format_datetime (strftime "%Y-%m-%d %I:%M:%S %p %Z%z"). */
export function formatLettaTime(at: Date, timezone: string | null): string {
  let zone = timezone || 'UTC';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    zone = 'UTC';
  }
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: true, timeZoneName: 'short' })
      .formatToParts(at)
      .map((p) => [p.type, p.value]),
  );
  const local = Date.UTC(+parts.year, +parts.month - 1, +parts.day, (+parts.hour % 12) + (parts.dayPeriod === 'PM' ? 12 : 0), +parts.minute, +parts.second);
  const offMin = Math.round((local - Math.floor(at.getTime() / 1000) * 1000) / 60000);
  const sign = offMin < 0 ? '-' : '+';
  const off = `${sign}${String(Math.floor(Math.abs(offMin) / 60)).padStart(2, '0')}${String(Math.abs(offMin) % 60).padStart(2, '0')}`;
  const abbr = zone === 'UTC' ? 'UTC' : /^GMT[+-]/.test(parts.timeZoneName) ? off.replace(/00$/, '') : parts.timeZoneName;
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${parts.dayPeriod} ${abbr}${off}`;
}

/** The compiled system prompt Letta writes as an agent's first message (see the file comment). */
export function compileSystemMessage(agent: InitialMessageAgent, blocks: InitialMessageBlock[], at: Date, counts: { messages?: number; passages?: number } = {}): string {
  const metadata = [
    '<memory_metadata>',
    `- AGENT_ID: ${agent.id}`,
    '- CONVERSATION_ID: default',
    `- System prompt last recompiled: ${formatLettaTime(at, agent.timezone)}`,
    `- ${counts.messages ?? 0} previous messages between you and the user are stored in recall memory`,
    ...(counts.passages ? [`- ${counts.passages} total memories you created are stored in archival memory (use tools to access them)`] : []),
    '</memory_metadata>',
  ].join('\n');
  const memory = `${renderMemoryBlocks(agent, blocks)}\n\n${metadata}`;
  let system = agent.system ?? '';
  const keyword = '{CORE_MEMORY}';
  if (!system.includes(keyword)) system += `\n\n${keyword}`;
  return system.split(keyword).join(memory);
}

/** The `agent_vault` extension object of an .af document (what Letta's .af has no field for; docs/FORMAT.md). */
export const AV_EXT = 'agent_vault';
export const AV_EXT_VERSION = 1;

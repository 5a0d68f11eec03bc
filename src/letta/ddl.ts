/**
 * Agent Vault's own DDL for the Letta V1 server schema at alembic head `1c28e167b74f`.
 *
 * Written from the schema facts in `shared/reference/letta-schema/NOTES.md`; the conformance
 * test (`test/letta/schema-conformance.test.ts`) checks that what this DDL creates matches the
 * catalog of a database built by Letta's own migrations (`columns.txt`, `constraints.txt`):
 * column order, types, NOT NULL, defaults, and every PRIMARY KEY / UNIQUE / FOREIGN KEY by name
 * and definition. Used to create test databases and empty PGlite vaults; never run against a
 * live Letta database.
 *
 * Not reproduced: Letta's btree indexes (no effect on what is stored), and the tables that
 * Agent Vault neither reads nor writes (jobs, steps, runs, providers, …). `messages` has foreign
 * keys to `steps(id)` and `runs(id)`, so minimal stand-ins `steps(id)` and `runs(id)` (primary
 * key only) are created to carry them; they are not part of LETTA_TABLES. A restore that does
 * not also restore steps/runs must write NULL to messages.step_id / messages.run_id.
 */
import { AgentVaultError, errorMessage } from '../core/errors';
import { quoteIdent } from '../db/errors';
import type { Db, Queryable } from '../db/types';

/** Alembic head revision this schema corresponds to (`alembic_version.version_num`). */
export const LETTA_HEAD_REVISION = '1c28e167b74f';
export const DEFAULT_ORG_ID = 'org-00000000-0000-4000-8000-000000000000';
export const DEFAULT_ORG_NAME = 'default_org';
export const DEFAULT_USER_ID = 'user-00000000-0000-4000-8000-000000000000';
export const DEFAULT_USER_NAME = 'default_user';
export const DEFAULT_LETTA_SCHEMA = 'letta';

/**
 * Every Letta table Agent Vault knows, in an insert order that satisfies all foreign keys
 * (the order of NOTES.md, with the tables it does not place put where their keys allow, and
 * `conversations` ahead of `messages` because messages.conversation_id references it).
 * One cycle remains: block.current_history_entry_id → block_history(id) and
 * block_history.block_id → block(id). Insert `block` with current_history_entry_id NULL,
 * then `block_history`, then UPDATE block. Delete in the reverse order.
 */
export const LETTA_TABLES = [
  'organizations',
  'users',
  'tools',
  'mcp_server',
  'mcp_tools',
  'sandbox_configs',
  'sandbox_environment_variables',
  'sources',
  'block',
  'block_history',
  'blocks_tags',
  'identities',
  'agents',
  'files',
  'file_contents',
  'source_passages',
  'conversations',
  'messages',
  'blocks_agents',
  'tools_agents',
  'sources_agents',
  'agents_tags',
  'identities_agents',
  'identities_blocks',
  'files_agents',
  'agent_environment_variables',
  'groups',
  'groups_agents',
  'groups_blocks',
  'archives',
  'archives_agents',
  'archival_passages',
  'passage_tags',
  'conversation_messages',
  'blocks_conversations',
] as const;

export type LettaTable = (typeof LETTA_TABLES)[number];

/** Enum types with their labels in catalog order. */
export const LETTA_ENUMS: Readonly<Record<string, readonly string[]>> = {
  vectordbprovider: ['NATIVE', 'TPUF', 'PINECONE'],
  sandboxtype: ['E2B', 'MODAL', 'LOCAL'],
  stepstatus: ['PENDING', 'SUCCESS', 'FAILED', 'CANCELLED'],
  stopreasontype: ['end_turn', 'error', 'invalid_tool_call', 'max_steps', 'no_tool_call', 'tool_rule', 'cancelled'],
};

/** Dimension of every embedding column (Letta's MAX_EMBEDDING_DIM; shorter vectors are zero-padded). */
export const LETTA_EMBEDDING_DIM = 4096;

/** Double-quotes a schema name after checking it is a plain identifier. */
export function quoteSchemaName(schema: string): string {
  return quoteIdent(schema, 'Schema name');
}

function enumDdl(): string {
  return Object.entries(LETTA_ENUMS)
    .map(([name, labels]) => `CREATE TYPE ${name} AS ENUM (${labels.map((l) => `'${l}'`).join(', ')});`)
    .join('\n');
}

/**
 * The table DDL (no schema names: run it with search_path set to the target schema, after the
 * enum types, the sequence and the vector extension exist there).
 */
export const LETTA_TABLES_DDL = `
-- Stand-ins for tables Agent Vault does not handle; they only carry the targets of
-- messages.step_id / messages.run_id.
CREATE TABLE steps (
  id varchar NOT NULL,
  CONSTRAINT steps_pkey PRIMARY KEY (id)
);

CREATE TABLE runs (
  id varchar NOT NULL,
  CONSTRAINT runs_pkey PRIMARY KEY (id)
);

CREATE TABLE organizations (
  id                  varchar NOT NULL,
  name                varchar NOT NULL,
  created_at          timestamptz,
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  privileged_tools    boolean NOT NULL,
  CONSTRAINT organizations_pkey PRIMARY KEY (id)
);

CREATE TABLE users (
  id                  varchar NOT NULL,
  name                varchar NOT NULL,
  created_at          timestamptz,
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  CONSTRAINT users_pkey PRIMARY KEY (id)
);

CREATE TABLE tools (
  id                        varchar NOT NULL,
  name                      varchar NOT NULL,
  description               varchar,
  source_type               varchar NOT NULL,
  source_code               varchar,
  json_schema               json,
  tags                      json NOT NULL,
  created_at                timestamptz DEFAULT now(),
  updated_at                timestamptz DEFAULT now(),
  is_deleted                boolean NOT NULL DEFAULT false,
  _created_by_id            varchar,
  _last_updated_by_id       varchar,
  organization_id           varchar NOT NULL,
  return_char_limit         integer,
  tool_type                 varchar NOT NULL,
  args_json_schema          json,
  metadata_                 json,
  pip_requirements          json,
  npm_requirements          json,
  default_requires_approval boolean,
  enable_parallel_execution boolean,
  project_id                varchar,
  CONSTRAINT tools_pkey PRIMARY KEY (id),
  CONSTRAINT uix_name_organization UNIQUE (name, organization_id),
  CONSTRAINT uix_organization_project_name UNIQUE NULLS NOT DISTINCT (organization_id, project_id, name)
);

CREATE TABLE mcp_server (
  id                  varchar NOT NULL,
  server_name         varchar NOT NULL,
  server_type         varchar NOT NULL,
  server_url          varchar,
  stdio_config        json,
  organization_id     varchar NOT NULL,
  is_deleted          boolean NOT NULL DEFAULT false,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  metadata_           json,
  token               varchar,
  custom_headers      json,
  token_enc           text,
  custom_headers_enc  text,
  CONSTRAINT mcp_server_pkey PRIMARY KEY (id),
  CONSTRAINT uix_name_organization_mcp_server UNIQUE (server_name, organization_id)
);

CREATE TABLE mcp_tools (
  mcp_server_id       varchar NOT NULL,
  tool_id             varchar NOT NULL,
  id                  varchar NOT NULL,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  CONSTRAINT mcp_tools_pkey PRIMARY KEY (id)
);

CREATE TABLE sandbox_configs (
  id                  varchar NOT NULL,
  type                sandboxtype NOT NULL,
  config              json NOT NULL,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  CONSTRAINT sandbox_configs_pkey PRIMARY KEY (id),
  CONSTRAINT uix_type_organization UNIQUE (type, organization_id)
);

CREATE TABLE sandbox_environment_variables (
  id                  varchar NOT NULL,
  key                 varchar NOT NULL,
  value               varchar NOT NULL,
  description         varchar,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  sandbox_config_id   varchar NOT NULL,
  value_enc           text,
  CONSTRAINT sandbox_environment_variables_pkey PRIMARY KEY (id),
  CONSTRAINT uix_key_sandbox_config UNIQUE (key, sandbox_config_id)
);

CREATE TABLE sources (
  id                  varchar NOT NULL,
  name                varchar NOT NULL,
  created_at          timestamptz DEFAULT now(),
  embedding_config    json NOT NULL,
  description         varchar,
  metadata_           json,
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  instructions        varchar,
  vector_db_provider  vectordbprovider NOT NULL,
  CONSTRAINT sources_pkey PRIMARY KEY (id),
  CONSTRAINT uq_source_name_organization UNIQUE (name, organization_id)
);

CREATE TABLE block (
  id                       varchar NOT NULL,
  value                    varchar NOT NULL,
  "limit"                  integer NOT NULL,
  template_name            varchar,
  label                    varchar NOT NULL,
  metadata_                json,
  description              varchar,
  is_template              boolean NOT NULL,
  organization_id          varchar NOT NULL,
  created_at               timestamptz DEFAULT now(),
  updated_at               timestamptz DEFAULT now(),
  is_deleted               boolean NOT NULL DEFAULT false,
  _created_by_id           varchar,
  _last_updated_by_id      varchar,
  current_history_entry_id varchar,
  version                  integer NOT NULL DEFAULT 1,
  read_only                boolean NOT NULL,
  preserve_on_migration    boolean,
  project_id               varchar,
  entity_id                varchar,
  base_template_id         varchar,
  template_id              varchar,
  deployment_id            varchar,
  hidden                   boolean,
  CONSTRAINT block_pkey PRIMARY KEY (id),
  CONSTRAINT unique_block_id_label UNIQUE (id, label)
);

CREATE TABLE block_history (
  description         text,
  label               varchar NOT NULL,
  value               text NOT NULL,
  "limit"             bigint NOT NULL,
  metadata_           json,
  actor_type          varchar,
  actor_id            varchar,
  block_id            varchar NOT NULL,
  sequence_number     integer NOT NULL,
  organization_id     varchar NOT NULL,
  id                  varchar NOT NULL,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  CONSTRAINT block_history_pkey PRIMARY KEY (id)
);

CREATE TABLE blocks_tags (
  block_id            varchar NOT NULL,
  tag                 varchar NOT NULL,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  CONSTRAINT unique_block_tag PRIMARY KEY (block_id, tag)
);

CREATE TABLE identities (
  id                  varchar NOT NULL,
  identifier_key      varchar NOT NULL,
  name                varchar NOT NULL,
  identity_type       varchar NOT NULL,
  project_id          varchar,
  organization_id     varchar NOT NULL,
  created_at          timestamptz DEFAULT CURRENT_TIMESTAMP,
  updated_at          timestamptz DEFAULT CURRENT_TIMESTAMP,
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  properties          json NOT NULL DEFAULT '[]'::jsonb,
  CONSTRAINT identities_pkey PRIMARY KEY (id),
  CONSTRAINT unique_identifier_key_project_id_organization_id UNIQUE NULLS NOT DISTINCT (identifier_key, project_id, organization_id)
);

CREATE TABLE agents (
  id                              varchar NOT NULL,
  name                            varchar,
  created_at                      timestamptz DEFAULT now(),
  description                     varchar,
  message_ids                     json,
  system                          varchar,
  agent_type                      varchar,
  llm_config                      json,
  embedding_config                json,
  metadata_                       json,
  tool_rules                      json,
  updated_at                      timestamptz DEFAULT now(),
  is_deleted                      boolean NOT NULL DEFAULT false,
  _created_by_id                  varchar,
  _last_updated_by_id             varchar,
  organization_id                 varchar NOT NULL,
  project_id                      varchar,
  template_id                     varchar,
  base_template_id                varchar,
  message_buffer_autoclear        boolean NOT NULL,
  enable_sleeptime                boolean,
  response_format                 json,
  last_run_completion             timestamptz,
  last_run_duration_ms            integer,
  timezone                        varchar,
  max_files_open                  integer,
  per_file_view_window_char_limit integer,
  hidden                          boolean,
  entity_id                       varchar,
  deployment_id                   varchar,
  _vector_db_namespace            varchar,
  last_stop_reason                varchar,
  compaction_settings             json,
  CONSTRAINT agents_pkey PRIMARY KEY (id)
);

CREATE TABLE files (
  id                      varchar NOT NULL,
  source_id               varchar NOT NULL,
  file_name               varchar,
  file_path               varchar,
  file_type               varchar,
  file_size               integer,
  file_creation_date      varchar,
  file_last_modified_date varchar,
  created_at              timestamptz DEFAULT now(),
  updated_at              timestamptz DEFAULT now(),
  is_deleted              boolean NOT NULL DEFAULT false,
  _created_by_id          varchar,
  _last_updated_by_id     varchar,
  organization_id         varchar NOT NULL,
  processing_status       varchar NOT NULL,
  error_message           text,
  original_file_name      varchar,
  total_chunks            integer,
  chunks_embedded         integer,
  CONSTRAINT files_pkey PRIMARY KEY (id)
);

CREATE TABLE file_contents (
  file_id             varchar NOT NULL,
  text                text NOT NULL,
  id                  varchar NOT NULL,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  CONSTRAINT file_contents_pkey PRIMARY KEY (file_id, id),
  CONSTRAINT uq_file_contents_file_id UNIQUE (file_id)
);

CREATE TABLE source_passages (
  id                  varchar NOT NULL,
  text                varchar NOT NULL,
  embedding_config    json,
  metadata_           json NOT NULL,
  embedding           vector(4096),
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  file_id             varchar,
  source_id           varchar NOT NULL,
  file_name           varchar NOT NULL,
  tags                json,
  CONSTRAINT source_passages_pkey PRIMARY KEY (id)
);

CREATE TABLE conversations (
  id                  varchar NOT NULL,
  agent_id            varchar NOT NULL,
  summary             varchar,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  model               varchar,
  model_settings      json,
  last_message_at     timestamptz,
  CONSTRAINT conversations_pkey PRIMARY KEY (id)
);

CREATE TABLE messages (
  id                  varchar NOT NULL,
  agent_id            varchar NOT NULL,
  role                varchar NOT NULL,
  text                varchar,
  model               varchar,
  name                varchar,
  tool_calls          json NOT NULL,
  tool_call_id        varchar,
  created_at          timestamptz,
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  step_id             varchar,
  otid                varchar,
  tool_returns        json,
  group_id            varchar,
  content             json,
  sequence_id         bigint NOT NULL DEFAULT nextval('message_seq_id'::regclass),
  sender_id           varchar,
  batch_item_id       varchar,
  is_err              boolean,
  approval_request_id varchar,
  approve             boolean,
  denial_reason       varchar,
  run_id              varchar,
  approvals           json,
  conversation_id     varchar,
  CONSTRAINT messages_pkey PRIMARY KEY (id),
  CONSTRAINT uq_messages_sequence_id UNIQUE (sequence_id)
);

CREATE TABLE blocks_agents (
  agent_id    varchar NOT NULL,
  block_id    varchar NOT NULL,
  block_label varchar NOT NULL,
  CONSTRAINT unique_agent_block UNIQUE (agent_id, block_id),
  CONSTRAINT unique_label_per_agent UNIQUE (agent_id, block_label)
);

CREATE TABLE tools_agents (
  agent_id varchar NOT NULL,
  tool_id  varchar NOT NULL,
  CONSTRAINT unique_agent_tool UNIQUE (agent_id, tool_id)
);

CREATE TABLE sources_agents (
  agent_id  varchar NOT NULL,
  source_id varchar NOT NULL,
  CONSTRAINT sources_agents_pkey PRIMARY KEY (agent_id, source_id)
);

CREATE TABLE agents_tags (
  agent_id varchar NOT NULL,
  tag      varchar NOT NULL,
  CONSTRAINT unique_agent_tag UNIQUE (agent_id, tag)
);

CREATE TABLE identities_agents (
  identity_id varchar NOT NULL,
  agent_id    varchar NOT NULL,
  CONSTRAINT identities_agents_pkey PRIMARY KEY (identity_id, agent_id)
);

CREATE TABLE identities_blocks (
  identity_id varchar NOT NULL,
  block_id    varchar NOT NULL,
  CONSTRAINT identities_blocks_pkey PRIMARY KEY (identity_id, block_id)
);

CREATE TABLE files_agents (
  id                  varchar NOT NULL,
  file_id             varchar NOT NULL,
  agent_id            varchar NOT NULL,
  is_open             boolean NOT NULL,
  visible_content     text,
  last_accessed_at    timestamptz NOT NULL DEFAULT now(),
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  file_name           varchar NOT NULL,
  source_id           varchar NOT NULL,
  start_line          integer,
  end_line            integer,
  CONSTRAINT files_agents_pkey PRIMARY KEY (id, file_id, agent_id),
  CONSTRAINT uq_agent_filename UNIQUE (agent_id, file_name),
  CONSTRAINT uq_file_agent UNIQUE (file_id, agent_id)
);

CREATE TABLE agent_environment_variables (
  id                  varchar NOT NULL,
  key                 varchar NOT NULL,
  value               varchar NOT NULL,
  description         varchar,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  agent_id            varchar NOT NULL,
  value_enc           text,
  CONSTRAINT agent_environment_variables_pkey PRIMARY KEY (id),
  CONSTRAINT uix_key_agent UNIQUE (key, agent_id)
);

CREATE TABLE groups (
  id                        varchar NOT NULL,
  description               varchar NOT NULL,
  manager_type              varchar NOT NULL,
  manager_agent_id          varchar,
  termination_token         varchar,
  max_turns                 integer,
  created_at                timestamptz DEFAULT now(),
  updated_at                timestamptz DEFAULT now(),
  is_deleted                boolean NOT NULL DEFAULT false,
  _created_by_id            varchar,
  _last_updated_by_id       varchar,
  organization_id           varchar NOT NULL,
  agent_ids                 json NOT NULL,
  sleeptime_agent_frequency integer,
  turns_counter             integer,
  last_processed_message_id varchar,
  max_message_buffer_length integer,
  min_message_buffer_length integer,
  project_id                varchar,
  base_template_id          varchar,
  template_id               varchar,
  deployment_id             varchar,
  hidden                    boolean,
  CONSTRAINT groups_pkey PRIMARY KEY (id)
);

CREATE TABLE groups_agents (
  group_id varchar NOT NULL,
  agent_id varchar NOT NULL,
  CONSTRAINT groups_agents_pkey PRIMARY KEY (group_id, agent_id)
);

CREATE TABLE groups_blocks (
  group_id varchar NOT NULL,
  block_id varchar NOT NULL,
  CONSTRAINT groups_blocks_pkey PRIMARY KEY (group_id, block_id)
);

CREATE TABLE archives (
  name                 varchar NOT NULL,
  description          varchar,
  metadata_            json,
  id                   varchar NOT NULL,
  created_at           timestamptz DEFAULT now(),
  updated_at           timestamptz DEFAULT now(),
  is_deleted           boolean NOT NULL DEFAULT false,
  _created_by_id       varchar,
  _last_updated_by_id  varchar,
  organization_id      varchar NOT NULL,
  vector_db_provider   vectordbprovider NOT NULL,
  _vector_db_namespace varchar,
  embedding_config     json,
  CONSTRAINT archives_pkey PRIMARY KEY (id)
);

CREATE TABLE archives_agents (
  agent_id   varchar NOT NULL,
  archive_id varchar NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  is_owner   boolean NOT NULL,
  CONSTRAINT archives_agents_pkey PRIMARY KEY (agent_id, archive_id),
  CONSTRAINT unique_agent_archive UNIQUE (agent_id)
);

CREATE TABLE archival_passages (
  id                  varchar NOT NULL,
  text                varchar NOT NULL,
  embedding_config    json,
  metadata_           json NOT NULL,
  embedding           vector(4096),
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  archive_id          varchar NOT NULL,
  tags                json,
  CONSTRAINT agent_passages_pkey PRIMARY KEY (id)
);

CREATE TABLE passage_tags (
  id                  varchar NOT NULL,
  tag                 varchar NOT NULL,
  passage_id          varchar NOT NULL,
  archive_id          varchar NOT NULL,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  CONSTRAINT passage_tags_pkey PRIMARY KEY (id),
  CONSTRAINT uq_passage_tag UNIQUE (passage_id, tag)
);

CREATE TABLE conversation_messages (
  id                  varchar NOT NULL,
  conversation_id     varchar,
  agent_id            varchar NOT NULL,
  message_id          varchar NOT NULL,
  position            integer NOT NULL,
  in_context          boolean NOT NULL,
  created_at          timestamptz DEFAULT now(),
  updated_at          timestamptz DEFAULT now(),
  is_deleted          boolean NOT NULL DEFAULT false,
  _created_by_id      varchar,
  _last_updated_by_id varchar,
  organization_id     varchar NOT NULL,
  CONSTRAINT conversation_messages_pkey PRIMARY KEY (id),
  CONSTRAINT unique_conversation_message UNIQUE (conversation_id, message_id)
);

CREATE TABLE blocks_conversations (
  conversation_id varchar NOT NULL,
  block_id        varchar NOT NULL,
  block_label     varchar NOT NULL,
  CONSTRAINT blocks_conversations_pkey PRIMARY KEY (conversation_id, block_id, block_label),
  CONSTRAINT unique_conversation_block UNIQUE (conversation_id, block_id),
  CONSTRAINT unique_label_per_conversation UNIQUE (conversation_id, block_label)
);

ALTER TABLE users ADD CONSTRAINT users_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE tools ADD CONSTRAINT tools_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE mcp_server ADD CONSTRAINT mcp_server_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE mcp_tools ADD CONSTRAINT mcp_tools_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE sandbox_configs ADD CONSTRAINT sandbox_configs_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE sandbox_environment_variables ADD CONSTRAINT sandbox_environment_variables_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE sandbox_environment_variables ADD CONSTRAINT sandbox_environment_variables_sandbox_config_id_fkey FOREIGN KEY (sandbox_config_id) REFERENCES sandbox_configs(id);
ALTER TABLE sources ADD CONSTRAINT sources_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE block ADD CONSTRAINT block_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE block ADD CONSTRAINT fk_block_current_history_entry FOREIGN KEY (current_history_entry_id) REFERENCES block_history(id);
ALTER TABLE block_history ADD CONSTRAINT block_history_block_id_fkey FOREIGN KEY (block_id) REFERENCES block(id) ON DELETE CASCADE;
ALTER TABLE block_history ADD CONSTRAINT block_history_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE blocks_tags ADD CONSTRAINT blocks_tags_block_id_fkey FOREIGN KEY (block_id) REFERENCES block(id);
ALTER TABLE blocks_tags ADD CONSTRAINT blocks_tags_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE identities ADD CONSTRAINT identities_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE agents ADD CONSTRAINT agents_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE files ADD CONSTRAINT files_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE files ADD CONSTRAINT files_source_id_fkey FOREIGN KEY (source_id) REFERENCES sources(id) ON DELETE CASCADE;
ALTER TABLE file_contents ADD CONSTRAINT file_contents_file_id_fkey FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE;
ALTER TABLE source_passages ADD CONSTRAINT source_passages_file_id_fkey FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE;
ALTER TABLE source_passages ADD CONSTRAINT source_passages_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE source_passages ADD CONSTRAINT source_passages_source_id_fkey FOREIGN KEY (source_id) REFERENCES sources(id) ON DELETE CASCADE;
ALTER TABLE conversations ADD CONSTRAINT conversations_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE conversations ADD CONSTRAINT conversations_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE messages ADD CONSTRAINT fk_messages_run_id FOREIGN KEY (run_id) REFERENCES runs(id) ON DELETE SET NULL;
ALTER TABLE messages ADD CONSTRAINT fk_messages_step_id FOREIGN KEY (step_id) REFERENCES steps(id) ON DELETE SET NULL;
ALTER TABLE messages ADD CONSTRAINT messages_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE messages ADD CONSTRAINT messages_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES conversations(id) ON DELETE SET NULL;
ALTER TABLE messages ADD CONSTRAINT messages_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE blocks_agents ADD CONSTRAINT blocks_agents_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE blocks_agents ADD CONSTRAINT fk_block_id_label FOREIGN KEY (block_id, block_label) REFERENCES block(id, label) ON UPDATE CASCADE ON DELETE CASCADE DEFERRABLE;
ALTER TABLE tools_agents ADD CONSTRAINT tools_agents_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE tools_agents ADD CONSTRAINT tools_agents_tool_id_fkey FOREIGN KEY (tool_id) REFERENCES tools(id) ON DELETE CASCADE;
ALTER TABLE sources_agents ADD CONSTRAINT sources_agents_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE sources_agents ADD CONSTRAINT sources_agents_source_id_fkey FOREIGN KEY (source_id) REFERENCES sources(id) ON DELETE CASCADE;
ALTER TABLE agents_tags ADD CONSTRAINT agents_tags_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id);
ALTER TABLE identities_agents ADD CONSTRAINT identities_agents_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE identities_agents ADD CONSTRAINT identities_agents_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities(id) ON DELETE CASCADE;
ALTER TABLE identities_blocks ADD CONSTRAINT identities_blocks_block_id_fkey FOREIGN KEY (block_id) REFERENCES block(id) ON DELETE CASCADE;
ALTER TABLE identities_blocks ADD CONSTRAINT identities_blocks_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities(id) ON DELETE CASCADE;
ALTER TABLE files_agents ADD CONSTRAINT files_agents_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE files_agents ADD CONSTRAINT files_agents_file_id_fkey FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE;
ALTER TABLE files_agents ADD CONSTRAINT files_agents_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE files_agents ADD CONSTRAINT files_agents_source_id_fkey FOREIGN KEY (source_id) REFERENCES sources(id) ON DELETE CASCADE;
ALTER TABLE agent_environment_variables ADD CONSTRAINT agent_environment_variables_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE agent_environment_variables ADD CONSTRAINT agent_environment_variables_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE groups ADD CONSTRAINT groups_manager_agent_id_fkey FOREIGN KEY (manager_agent_id) REFERENCES agents(id) ON DELETE RESTRICT;
ALTER TABLE groups ADD CONSTRAINT groups_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE groups_agents ADD CONSTRAINT groups_agents_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE groups_agents ADD CONSTRAINT groups_agents_group_id_fkey FOREIGN KEY (group_id) REFERENCES groups(id) ON DELETE CASCADE;
ALTER TABLE groups_blocks ADD CONSTRAINT groups_blocks_block_id_fkey FOREIGN KEY (block_id) REFERENCES block(id) ON DELETE CASCADE;
ALTER TABLE groups_blocks ADD CONSTRAINT groups_blocks_group_id_fkey FOREIGN KEY (group_id) REFERENCES groups(id) ON DELETE CASCADE;
ALTER TABLE archives ADD CONSTRAINT archives_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE archives_agents ADD CONSTRAINT archives_agents_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE archives_agents ADD CONSTRAINT archives_agents_archive_id_fkey FOREIGN KEY (archive_id) REFERENCES archives(id) ON DELETE CASCADE;
ALTER TABLE archival_passages ADD CONSTRAINT agent_passages_archive_id_fkey FOREIGN KEY (archive_id) REFERENCES archives(id) ON DELETE CASCADE;
ALTER TABLE archival_passages ADD CONSTRAINT agent_passages_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE passage_tags ADD CONSTRAINT passage_tags_archive_id_fkey FOREIGN KEY (archive_id) REFERENCES archives(id) ON DELETE CASCADE;
ALTER TABLE passage_tags ADD CONSTRAINT passage_tags_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE passage_tags ADD CONSTRAINT passage_tags_passage_id_fkey FOREIGN KEY (passage_id) REFERENCES archival_passages(id) ON DELETE CASCADE;
ALTER TABLE conversation_messages ADD CONSTRAINT conversation_messages_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE;
ALTER TABLE conversation_messages ADD CONSTRAINT conversation_messages_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES conversations(id) ON DELETE CASCADE;
ALTER TABLE conversation_messages ADD CONSTRAINT conversation_messages_message_id_fkey FOREIGN KEY (message_id) REFERENCES messages(id) ON DELETE CASCADE;
ALTER TABLE conversation_messages ADD CONSTRAINT conversation_messages_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id);
ALTER TABLE blocks_conversations ADD CONSTRAINT blocks_conversations_block_id_fkey FOREIGN KEY (block_id) REFERENCES block(id) ON DELETE CASCADE;
ALTER TABLE blocks_conversations ADD CONSTRAINT blocks_conversations_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES conversations(id) ON DELETE CASCADE;
`;

export interface CreateLettaSchemaOptions {
  /** Schema to create (default `letta`, like Letta's own init.sql). */
  schema?: string;
  /** Insert the default organization and user (default true). */
  seedDefaults?: boolean;
}

/**
 * Creates Letta's schema (at LETTA_HEAD_REVISION) in one transaction: the schema, the `vector`
 * extension in it, enum types, the `message_seq_id` sequence, all tables with their keys,
 * `alembic_version`, and the default organization and user. Fails if the schema already holds
 * any of these objects. Works on both backends.
 */
export async function createLettaSchema(db: Db, opts: CreateLettaSchemaOptions = {}): Promise<void> {
  const schema = opts.schema ?? DEFAULT_LETTA_SCHEMA;
  const q = quoteSchemaName(schema);
  await db.transaction(async (tx) => {
    await tx.exec(`CREATE SCHEMA IF NOT EXISTS ${q};\nSET LOCAL search_path TO ${q};`);
    await createVectorExtension(tx, q);
    await tx.exec(
      [
        enumDdl(),
        'CREATE SEQUENCE message_seq_id START 1;',
        LETTA_TABLES_DDL,
        'CREATE TABLE alembic_version (\n  version_num varchar(32) NOT NULL,\n  CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n);',
      ].join('\n'),
    );
    await tx.query('INSERT INTO alembic_version (version_num) VALUES ($1)', [LETTA_HEAD_REVISION]);
    if (opts.seedDefaults ?? true) {
      await tx.query('INSERT INTO organizations (id, name, created_at, privileged_tools) VALUES ($1, $2, now(), false)', [DEFAULT_ORG_ID, DEFAULT_ORG_NAME]);
      await tx.query('INSERT INTO users (id, name, created_at, organization_id) VALUES ($1, $2, now(), $3)', [DEFAULT_USER_ID, DEFAULT_USER_NAME, DEFAULT_ORG_ID]);
    }
  });
}

async function createVectorExtension(tx: Queryable, quotedSchema: string): Promise<void> {
  const existing = await tx.query<{ nspname: string }>(`SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'`);
  if (existing.rows.length > 0) {
    const where = existing.rows[0].nspname;
    if (`"${where}"` !== quotedSchema) {
      throw new AgentVaultError('db-pgvector-elsewhere', `The pgvector extension is already installed in schema "${where}" of this database, but the Letta schema needs it in ${quotedSchema}.`, {
        hint: `Use a database where pgvector is not yet installed, or ALTER EXTENSION vector SET SCHEMA ${quotedSchema}.`,
      });
    }
    return;
  }
  try {
    await tx.exec(`CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA ${quotedSchema};`);
  } catch (e) {
    if (e instanceof AgentVaultError) throw e;
    throw new AgentVaultError('db-no-pgvector', `Cannot create the pgvector extension ("vector"): ${errorMessage(e)}`, {
      hint: 'Install pgvector on the PostgreSQL server (for the test cluster: run scripts/provision-pgvector.sh as root).',
      cause: e,
    });
  }
}

/**
 * A new or empty database (the schema is missing or holds no table, view or sequence): Letta's
 * schema is created at LETTA_HEAD_REVISION with the default organization and user, and true is
 * returned. A schema that holds anything is left alone (false): a real Letta server's database
 * already has its schema, and an unrelated one is not Agent Vault's to fill.
 */
export async function createLettaSchemaIfEmpty(db: Db, opts: CreateLettaSchemaOptions = {}): Promise<boolean> {
  const schema = opts.schema ?? DEFAULT_LETTA_SCHEMA;
  const r = await db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'S', 'p', 'f')`,
    [schema],
  );
  if (Number(r.rows[0]?.n ?? 0) > 0) return false;
  await createLettaSchema(db, opts);
  return true;
}

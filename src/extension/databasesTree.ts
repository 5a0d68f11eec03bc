/**
 * The "Databases" view: the configured Letta database connections, each expanding into its agents
 * with message and passage counts (listAgents from src/letta/export.ts).
 */
import * as vscode from 'vscode';
import { errorMessage } from '../core/errors';
import { listAgents, type AgentListing } from '../letta/export';
import { describeConnection, type ConnectionConfig, type Connections } from './connections';
import type { Log } from './log';

export type DatabasesNode = ConnectionNode | DbAgentNode | DbMessageNode;

export interface ConnectionNode {
  type: 'connection';
  connection: ConnectionConfig;
}

export interface DbAgentNode {
  type: 'dbAgent';
  connection: ConnectionConfig;
  agent: AgentListing;
}

export interface DbMessageNode {
  type: 'dbMessage';
  label: string;
  description?: string;
  icon: string;
}

export function agentCountsText(a: Pick<AgentListing, 'messages' | 'passages'>): string {
  return `${a.messages} message${a.messages === 1 ? '' : 's'} · ${a.passages} passage${a.passages === 1 ? '' : 's'}`;
}

export class DatabasesTree implements vscode.TreeDataProvider<DatabasesNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<DatabasesNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly agents = new Map<string, Promise<AgentListing[]>>();
  private readonly sub: vscode.Disposable;

  constructor(
    private readonly connections: Connections,
    private readonly log: Log,
  ) {
    this.sub = connections.onDidChange(() => this.refresh());
  }

  refresh(): void {
    this.agents.clear();
    this.changed.fire(undefined);
  }

  /** The agents of a connection (cached until the next refresh). Interactive: may ask for a password. */
  listAgents(name: string): Promise<AgentListing[]> {
    let p = this.agents.get(name);
    if (!p) {
      p = this.connections.with(name, (db) => listAgents(db));
      p.catch(() => this.agents.delete(name));
      this.agents.set(name, p);
    }
    return p;
  }

  async getChildren(node?: DatabasesNode): Promise<DatabasesNode[]> {
    if (!node) {
      const list = this.connections.list();
      if (!list.length) return [{ type: 'dbMessage', label: 'No database connections', description: 'Add one with the + button', icon: 'info' }];
      return list.map((c) => ({ type: 'connection', connection: c }));
    }
    if (node.type !== 'connection') return [];
    try {
      const agents = await this.listAgents(node.connection.name);
      if (!agents.length) return [{ type: 'dbMessage', label: 'No agents in this database', icon: 'info' }];
      return agents.map((a) => ({ type: 'dbAgent', connection: node.connection, agent: a }));
    } catch (e) {
      const msg = errorMessage(e);
      this.log.warn(`listing the agents of "${node.connection.name}": ${msg}`);
      return [{ type: 'dbMessage', label: 'Cannot connect', description: msg, icon: 'error' }];
    }
  }

  getTreeItem(node: DatabasesNode): vscode.TreeItem {
    switch (node.type) {
      case 'connection': {
        const item = new vscode.TreeItem(node.connection.name, vscode.TreeItemCollapsibleState.Collapsed);
        item.id = `connection:${node.connection.name}`;
        item.description = describeConnection(node.connection);
        item.contextValue = 'connection';
        item.iconPath = new vscode.ThemeIcon('database');
        item.tooltip = `${node.connection.name}: ${describeConnection(node.connection)}${node.connection.ssl ? ` (sslmode ${node.connection.ssl})` : ''}`;
        return item;
      }
      case 'dbAgent': {
        const a = node.agent;
        const item = new vscode.TreeItem(a.name ?? a.id, vscode.TreeItemCollapsibleState.None);
        item.id = `dbAgent:${node.connection.name}:${a.id}`;
        item.description = agentCountsText(a);
        item.contextValue = 'dbAgent';
        item.iconPath = new vscode.ThemeIcon('hubot');
        item.tooltip = `${a.id}\n${a.agent_type ?? ''}\n${a.messages} messages (${a.in_context_messages} in context), ${a.passages} passages, ${a.blocks} blocks, ${a.tools} tools\nLLM ${a.llm_model ?? '-'}, embedding ${a.embedding_model ?? '-'}${a.embedding_dim ? `/${a.embedding_dim}` : ''}`;
        return item;
      }
      case 'dbMessage': {
        const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
        item.description = node.description;
        item.tooltip = node.description;
        item.iconPath = new vscode.ThemeIcon(node.icon);
        return item;
      }
    }
  }

  dispose(): void {
    this.changed.dispose();
    this.sub.dispose();
  }
}

/**
 * Cluster mode and aliases. In distributed mode a collection snapshot (and an upload) covers only
 * the shards on the node called (lib/collection/src/collection/snapshots.rs snapshots local shard
 * replicas only; lib/storage/src/content_manager/snapshots/recover.rs recovers local shards only),
 * so a backup of a collection with shards on other peers would be silently partial: it is refused.
 * Custom sharding is refused too: its shard keys are not part of a collection snapshot and are not
 * created on recovery.
 */
import { AgentVaultError } from '../core/errors';
import type { QdrantConnection } from './connection';
import type { Schemas } from './types';

export interface ClusterInfo {
  distributed: boolean;
  peers: number;
}

/** `GET /cluster` (src/actix/api/cluster_api.rs): `{status: "disabled"}` on a single node. */
export async function clusterInfo(conn: QdrantConnection): Promise<ClusterInfo> {
  const r = await conn.call('reading the cluster status (GET /cluster)', (c) => c.api().clusterStatus({}), { retry: true });
  const st = r.data.result as Schemas['ClusterStatus'] | undefined;
  if (!st || st.status !== 'enabled') return { distributed: false, peers: 1 };
  return { distributed: true, peers: Object.keys(st.peers ?? {}).length };
}

function clusterError(message: string): AgentVaultError {
  return new AgentVaultError('QDRANT_CLUSTER', message, {
    kind: 'usage',
    hint: "Back up a distributed collection per shard on each peer with Qdrant's own shard snapshot API (/collections/{name}/shards/{shard}/snapshots), or move all its shards to one peer first. Nothing was changed.",
  });
}

/**
 * Refuses collections a collection snapshot would not cover completely: shards on other peers
 * (`GET /collections/{c}/cluster` lists them as `remote_shards`) or custom sharding.
 */
export async function ensureSnapshotCoversCollection(conn: QdrantConnection, cluster: ClusterInfo, collection: string, shardingMethod: string): Promise<void> {
  if (shardingMethod === 'custom') {
    throw clusterError(`Collection '${collection}' uses custom sharding; its shard keys are not part of a collection snapshot and would not be re-created on restore. Refused.`);
  }
  if (!cluster.distributed) return;
  const info = await conn.call(`reading the shard layout of collection '${collection}'`, (c) => c.collectionClusterInfo(collection), { retry: true });
  const remote = info.remote_shards ?? [];
  if (remote.length) {
    const peers = [...new Set(remote.map((r) => r.peer_id))].join(', ');
    throw clusterError(
      `Qdrant at ${conn.url} runs in distributed mode and collection '${collection}' has ${remote.length} shard replica(s) on other peers (${peers}); ` +
        `a collection snapshot taken through this node would contain only its local shards. Refused.`,
    );
  }
}

/** Restores into a distributed cluster with more than one peer are refused (recovery covers local shards only). */
export function ensureSingleNodeForRestore(conn: QdrantConnection, cluster: ClusterInfo): void {
  if (cluster.distributed && cluster.peers > 1) {
    throw clusterError(`Qdrant at ${conn.url} runs in distributed mode with ${cluster.peers} peers; a snapshot upload would recover only the shards on this node. Refused.`);
  }
}

/** alias → collection, from `GET /aliases`. */
export async function listAliases(conn: QdrantConnection): Promise<Map<string, string>> {
  const r = await conn.call('listing aliases (GET /aliases)', (c) => c.getAliases(), { retry: true });
  return new Map(r.aliases.map((a) => [a.alias_name, a.collection_name]));
}

/** `POST /collections/aliases` with the given actions. */
export async function changeAliases(conn: QdrantConnection, what: string, actions: Schemas['AliasOperations'][]): Promise<void> {
  if (!actions.length) return;
  await conn.call(what, (c) => c.updateCollectionAliases({ actions }), { retry: true });
}

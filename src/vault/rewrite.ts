/**
 * Copying an archive entry by entry into a new one: to encrypt an export, to add the vault's own
 * entries (probes, secrets, Qdrant collections), or to decrypt a snapshot into a private scratch
 * copy for a tool that reads plain archives. Every entry is verified (and, when encrypted,
 * authenticated) while it is copied; on any failure the destination is never created.
 */
import { createArchiveWriter, defaultCompress, type ArchiveReader, type ArchiveWriter, type Manifest, type ManifestInput } from '../format/archive';
import type { ArchiveKey } from '../format/crypto';

export interface CopyArchiveOptions {
  encryption?: { key: ArchiveKey };
  overwrite?: boolean;
  /** Entries to leave out (e.g. `secrets/` when writing a plain copy). */
  skip?: (name: string) => boolean;
  /** Adds entries after the copied ones; returns manifest fields to set. */
  extra?: (writer: ArchiveWriter) => Promise<Partial<ManifestInput> | void>;
}

export async function copyArchive(reader: ArchiveReader, dest: string, opts: CopyArchiveOptions = {}): Promise<{ path: string; manifest: Manifest; bytes: number }> {
  const writer = await createArchiveWriter(dest, { overwrite: opts.overwrite, encryption: opts.encryption });
  try {
    const skipped = new Set<string>();
    for (const e of reader.manifest.entries) {
      if (opts.skip?.(e.name)) {
        skipped.add(e.name);
        continue;
      }
      const compress = e.encrypted ? defaultCompress(e.name) : e.compression ? e.compression === 'deflate' : defaultCompress(e.name);
      await writer.addStream(e.name, await reader.openStream(e.name), { mediaType: e.media_type, compress });
    }
    const more = (await opts.extra?.(writer)) ?? {};
    const { entries: _e, encryption: _enc, format: _f, format_version: _v, tool: _t, ...rest } = reader.manifest;
    const agents = rest.agents.map((a) => ({
      ...a,
      passages_entry: a.passages_entry && skipped.has(a.passages_entry) ? null : a.passages_entry,
      vectors_entry: a.vectors_entry && skipped.has(a.vectors_entry) ? null : a.vectors_entry,
      ...(a.file_passages_entry !== undefined ? { file_passages_entry: a.file_passages_entry && skipped.has(a.file_passages_entry) ? null : a.file_passages_entry } : {}),
      ...(a.file_vectors_entry !== undefined ? { file_vectors_entry: a.file_vectors_entry && skipped.has(a.file_vectors_entry) ? null : a.file_vectors_entry } : {}),
    }));
    return await writer.finish({ ...rest, agents, ...more });
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

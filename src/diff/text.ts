/** Line diffs of texts (system prompt, block values, tool source code), computed by jsdiff. */
import { structuredPatch } from 'diff';
import type { TextDiff } from './types';

/** Beyond this many edited lines jsdiff gives up and the text is reported as replaced whole. */
const MAX_EDIT_LENGTH = 20000;
const CONTEXT_LINES = 3;

function lineCount(s: string): number {
  if (s === '') return 0;
  let n = 1;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return s.endsWith('\n') ? n - 1 : n;
}

function splitLines(s: string): string[] {
  if (s === '') return [];
  const lines = s.split('\n');
  if (s.endsWith('\n')) lines.pop();
  return lines;
}

/** null when the texts are equal (absent counts as empty). */
export function textDiff(a: string | null | undefined, b: string | null | undefined): TextDiff | null {
  const x = a ?? '';
  const y = b ?? '';
  if (x === y) return null;
  // Compare as lines that all end in "\n": a missing final newline is not a change of its own.
  const xn = x === '' || x.endsWith('\n') ? x : `${x}\n`;
  const yn = y === '' || y.endsWith('\n') ? y : `${y}\n`;
  const base = { a_lines: lineCount(x), b_lines: lineCount(y) };
  if (xn === yn) {
    // only the final newline differs
    return { ...base, added_lines: 0, removed_lines: 0, hunks: [] };
  }
  const patch = structuredPatch('a', 'b', xn, yn, undefined, undefined, { context: CONTEXT_LINES, maxEditLength: MAX_EDIT_LENGTH });
  if (!patch) {
    const removed = splitLines(xn).map((l) => `-${l}`);
    const added = splitLines(yn).map((l) => `+${l}`);
    return {
      ...base,
      added_lines: added.length,
      removed_lines: removed.length,
      hunks: [{ a_start: 1, a_lines: removed.length, b_start: 1, b_lines: added.length, lines: [...removed, ...added] }],
      replaced_whole: true,
    };
  }
  let added = 0;
  let removed = 0;
  const hunks = patch.hunks.map((h) => {
    const lines = h.lines.filter((l) => !l.startsWith('\\'));
    for (const l of lines) {
      if (l.startsWith('+')) added++;
      else if (l.startsWith('-')) removed++;
    }
    return { a_start: h.oldStart, a_lines: h.oldLines, b_start: h.newStart, b_lines: h.newLines, lines };
  });
  return { ...base, added_lines: added, removed_lines: removed, hunks };
}

/**
 * Positions in JSON text: JSON Pointer → line/column, and a precise description of the first
 * syntax error. Both walk the text once with jsonc-parser's scanner and an explicit stack, so
 * they are linear in the input and survive any nesting depth (no recursion).
 */
import { createScanner, ScanError, SyntaxKind } from 'jsonc-parser';

export interface TextPosition {
  offset: number;
  /** 1-based */
  line: number;
  /** 1-based, in UTF-16 code units */
  column: number;
}

/** Line starts, computed once per text and only when a position is needed. */
export class LineIndex {
  private starts: number[] | undefined;
  constructor(private readonly text: string) {}

  position(offset: number): TextPosition {
    const starts = (this.starts ??= computeLineStarts(this.text));
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { offset, line: lo + 1, column: offset - starts[lo] + 1 };
  }
}

function computeLineStarts(text: string): number[] {
  const starts = [0];
  let i = text.indexOf('\n');
  while (i !== -1) {
    starts.push(i + 1);
    i = text.indexOf('\n', i + 1);
  }
  return starts;
}

export function escapePointerSegment(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function pointerOf(segments: readonly (string | number)[]): string {
  let p = '';
  for (const s of segments) p += '/' + (typeof s === 'number' ? String(s) : escapePointerSegment(s));
  return p;
}

interface Frame {
  kind: 'object' | 'array';
  pointer: string;
  openOffset: number;
  /** object: the key just read; array: next index */
  key: string | null;
  index: number;
  /** what the walker expects next in this container */
  state: 'first' | 'key' | 'colon' | 'value' | 'comma';
}

export interface SyntaxProblem {
  offset: number;
  message: string;
  /** JSON Pointer of the innermost container open at the error */
  pointer: string;
}

type Visitor = (pointer: string, offset: number) => boolean | void;

/**
 * Walks the whole text. Calls `onValue(pointer, offset)` at the start of every value (return true
 * to stop early). Returns the first syntax problem, or undefined for well-formed JSON.
 */
export function walkJson(text: string, onValue?: Visitor): SyntaxProblem | undefined {
  const scanner = createScanner(text, false);
  const stack: Frame[] = [];
  let rootDone = false;

  const fail = (offset: number, message: string): SyntaxProblem => ({
    offset,
    message,
    pointer: stack.length ? stack[stack.length - 1].pointer : '',
  });

  const childPointer = (): string => {
    const top = stack[stack.length - 1];
    if (!top) return '';
    return top.kind === 'object' ? top.pointer + '/' + escapePointerSegment(top.key ?? '') : top.pointer + '/' + top.index;
  };

  for (;;) {
    const token = scanner.scan();
    const offset = scanner.getTokenOffset();
    const err = scanner.getTokenError();
    if (token === SyntaxKind.Trivia || token === SyntaxKind.LineBreakTrivia) continue;
    if (token === SyntaxKind.LineCommentTrivia || token === SyntaxKind.BlockCommentTrivia) {
      return fail(offset, 'comments are not allowed in JSON');
    }
    if (err !== ScanError.None && token !== SyntaxKind.EOF) {
      return fail(offset, describeScanError(err));
    }
    if (token === SyntaxKind.EOF) {
      if (stack.length) {
        const open = stack[stack.length - 1];
        const what = open.kind === 'object' ? 'object' : 'array';
        return {
          offset: text.length,
          message: `unexpected end of input: the ${what} at ${open.pointer || '/'} (opened at offset ${open.openOffset}) is not closed — the file looks truncated`,
          pointer: open.pointer,
        };
      }
      if (!rootDone) return fail(offset, 'the input holds no JSON value');
      return undefined;
    }

    const top = stack[stack.length - 1];
    if (!top) {
      if (rootDone) return fail(offset, 'unexpected content after the end of the JSON document');
    } else if (top.state === 'colon') {
      if (token !== SyntaxKind.ColonToken) return fail(offset, `expected ':' after the key "${truncate(top.key ?? '')}"`);
      top.state = 'value';
      continue;
    } else if (top.state === 'comma') {
      if (token === SyntaxKind.CommaToken) {
        top.state = top.kind === 'object' ? 'key' : 'value';
        continue;
      }
      if ((top.kind === 'object' && token === SyntaxKind.CloseBraceToken) || (top.kind === 'array' && token === SyntaxKind.CloseBracketToken)) {
        stack.pop();
        if (!stack.length) rootDone = true;
        continue;
      }
      return fail(offset, top.kind === 'object' ? "expected ',' or '}' after a property value" : "expected ',' or ']' after an array element");
    } else if (top.kind === 'object' && (top.state === 'first' || top.state === 'key')) {
      if (token === SyntaxKind.CloseBraceToken) {
        if (top.state === 'key') return fail(offset, "trailing comma before '}' is not allowed in JSON");
        stack.pop();
        if (!stack.length) rootDone = true;
        continue;
      }
      if (token !== SyntaxKind.StringLiteral) return fail(offset, 'expected a property name in double quotes');
      top.key = scanner.getTokenValue();
      top.state = 'colon';
      continue;
    } else if (top.kind === 'array' && top.state === 'first' && token === SyntaxKind.CloseBracketToken) {
      stack.pop();
      if (!stack.length) rootDone = true;
      continue;
    } else if (top.kind === 'array' && top.state === 'value' && token === SyntaxKind.CloseBracketToken) {
      return fail(offset, "trailing comma before ']' is not allowed in JSON");
    }

    // A value is expected here.
    const pointer = childPointer();
    switch (token) {
      case SyntaxKind.OpenBraceToken:
      case SyntaxKind.OpenBracketToken: {
        if (onValue && onValue(pointer, offset) === true) return undefined;
        if (top) advanceAfterValue(top);
        stack.push({
          kind: token === SyntaxKind.OpenBraceToken ? 'object' : 'array',
          pointer,
          openOffset: offset,
          key: null,
          index: 0,
          state: 'first',
        });
        continue;
      }
      case SyntaxKind.StringLiteral:
      case SyntaxKind.NumericLiteral:
      case SyntaxKind.NullKeyword:
      case SyntaxKind.TrueKeyword:
      case SyntaxKind.FalseKeyword:
        if (onValue && onValue(pointer, offset) === true) return undefined;
        if (top) advanceAfterValue(top);
        else rootDone = true;
        continue;
      case SyntaxKind.CloseBraceToken:
      case SyntaxKind.CloseBracketToken:
        return fail(offset, `unexpected '${token === SyntaxKind.CloseBraceToken ? '}' : ']'}' where a value was expected`);
      case SyntaxKind.CommaToken:
        return fail(offset, "unexpected ',' where a value was expected");
      case SyntaxKind.ColonToken:
        return fail(offset, "unexpected ':' where a value was expected");
      default: {
        const bad = text.slice(offset, offset + Math.max(1, Math.min(scanner.getTokenLength(), 20)));
        return fail(offset, `unexpected ${describeChars(bad)} where a value was expected`);
      }
    }
  }
}

function advanceAfterValue(f: Frame): void {
  if (f.kind === 'array') f.index++;
  f.state = 'comma';
}

function describeScanError(e: ScanError): string {
  switch (e) {
    case ScanError.UnexpectedEndOfString:
      return 'unterminated string (missing closing quote)';
    case ScanError.UnexpectedEndOfNumber:
      return 'malformed number';
    case ScanError.InvalidUnicode:
      return 'invalid \\u escape in a string';
    case ScanError.InvalidEscapeCharacter:
      return 'invalid escape sequence in a string';
    case ScanError.InvalidCharacter:
      return 'invalid character in a string (control characters must be escaped)';
    case ScanError.UnexpectedEndOfComment:
      return 'unterminated comment';
    default:
      return 'invalid token';
  }
}

function describeChars(s: string): string {
  const printable = /^[\x20-\x7e]+$/.test(s);
  if (printable) return `'${s}'`;
  const code = s.codePointAt(0) ?? 0;
  return `character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}

function truncate(s: string, n = 40): string {
  return s.length > n ? s.slice(0, n) + '…' : s;
}

/**
 * Offsets of the given pointers in one pass. A pointer that names no value (e.g. a missing
 * property) resolves to its nearest existing ancestor.
 */
export function locatePointers(text: string, pointers: Iterable<string>): Map<string, TextPosition> {
  const wanted = new Set(pointers);
  const found = new Map<string, number>();
  if (wanted.size === 0) return new Map();
  // Every ancestor of a wanted pointer is recorded too, for the fallback.
  const ancestors = new Set<string>();
  for (const p of wanted) {
    let q = p;
    while (q.length) {
      q = q.slice(0, q.lastIndexOf('/'));
      ancestors.add(q);
    }
  }
  let remaining = wanted.size;
  walkJson(text, (pointer, offset) => {
    if (wanted.has(pointer) && !found.has(pointer)) {
      found.set(pointer, offset);
      remaining--;
    } else if (ancestors.has(pointer) && !found.has(pointer)) {
      found.set(pointer, offset);
    }
    return remaining === 0;
  });
  const lines = new LineIndex(text);
  const out = new Map<string, TextPosition>();
  for (const p of wanted) {
    let q: string | undefined = p;
    while (q !== undefined && !found.has(q)) q = q.length ? q.slice(0, q.lastIndexOf('/')) : undefined;
    const off = q !== undefined ? found.get(q)! : 0;
    out.set(p, lines.position(off));
  }
  return out;
}

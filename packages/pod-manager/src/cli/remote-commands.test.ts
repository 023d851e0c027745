import { describe, expect, it } from 'vitest';
import { formatTable } from './remote-commands.js';

/** Where each cell of a line starts, in terminal columns (a wide character takes two). */
function starts(line: string, cells: string[]): number[] {
  let column = 0;
  let rest = line;
  const out: number[] = [];
  for (const cell of cells) {
    const at = rest.indexOf(cell);
    column += [...rest.slice(0, at)].reduce(
      (w, ch) => w + (/[\u3000-\u9fff\uff00-\uffef]/.test(ch) ? 2 : 1),
      0,
    );
    out.push(column);
    column += [...cell].reduce((w, ch) => w + (/[\u3000-\u9fff\uff00-\uffef]/.test(ch) ? 2 : 1), 0);
    rest = rest.slice(at + cell.length);
  }
  return out;
}

describe('formatTable', () => {
  it('keeps columns aligned with long and wide module names', () => {
    const long = `@scope/${'a'.repeat(200)}`;
    const rows = [
      [long, 'remote', 'ready'],
      ['数学モジュール', 'local', 'absent'],
      ['x', 'auto', 'installing'],
    ];
    const lines = formatTable(['MODULE', 'MODE', 'STATE'], rows).trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    const columns = [['MODULE', 'MODE', 'STATE'], ...rows].map((cells, i) => starts(lines[i] ?? '', cells));
    for (const c of columns) expect(c).toEqual(columns[0]);
    expect(columns[0]?.[1]).toBe(long.length + 2);
  });
});

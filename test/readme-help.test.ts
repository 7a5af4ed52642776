/**
 * README's flag tables and `--help` are one truth: a flag in one and not the other, or a
 * default that differs, fails here. Every command with a flag table in README is checked.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

interface Flag {
  name: string;
  default?: string;
}

/** Options of `finetune CMD --help`: long names and commander's "(default: …)". */
function helpFlags(command: string[]): Map<string, Flag> {
  const text = execFileSync(process.execPath, [path.join(ROOT, 'bin', 'finetune.js'), ...command, '--help'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', COLUMNS: '400' } });
  const options = text.split(/\n(?=\S)/).find((block) => block.startsWith('Options:')) ?? '';
  const flags = new Map<string, Flag>();
  // An option line starts with its flags; continuation lines of a wrapped description do not.
  for (const entry of options.split(/\n(?=\s{2}-)/).slice(1)) {
    const name = /--[\w-]+/.exec(entry)?.[0];
    if (!name || name === '--help') continue;
    const def = /default: ("[^"]*"|[^)]*)\)\s*$/.exec(entry.replace(/\s+/g, ' ').trim())?.[1];
    flags.set(name, { name, default: def?.replace(/^"(.*)"$/, '$1') });
  }
  return flags;
}

/** The flag table under README's heading for the command: each row's flags, with their defaults where the row gives one per flag. */
function readmeFlags(heading: string): Map<string, Flag> {
  const start = README.indexOf(heading);
  assert.ok(start >= 0, `README has no section ${heading}`);
  const end = README.indexOf('\n### ', start + heading.length);
  const section = README.slice(start, end < 0 ? undefined : end);
  const flags = new Map<string, Flag>();
  for (const line of section.split('\n')) {
    if (!line.startsWith('| `-')) continue;
    const cells = line.split(/(?<!\\)\|/).map((c) => c.trim());
    const parts = cells[1].split(' / ');
    const defaults = cells[2].split(' / ');
    parts.forEach((part, i) => {
      const raw = defaults.length === parts.length ? defaults[i] : undefined;
      const def = raw && /^`[^`]*`$/.test(raw.trim()) ? raw.trim().slice(1, -1) : undefined;
      for (const [name] of part.matchAll(/--[\w-]+/g)) flags.set(name, { name, default: def });
    });
  }
  return flags;
}

/** A section that says it takes "the … flags of `train`" documents those through train's table. */
function inheritsTrain(heading: string): boolean {
  const start = README.indexOf(heading);
  const end = README.indexOf('\n### ', start + heading.length);
  return /flags of `train`/.test(README.slice(start, end < 0 ? undefined : end));
}

const COMMANDS: [string[], string][] = [
  [['train'], '### `finetune train DATA`'],
  [['audit'], '### `finetune audit DATA`'],
  [['export'], '### `finetune export OUT`'],
  [['serve'], '### `finetune serve`'],
  [['predict'], '### `finetune predict PATH...`'],
  [['evaluate'], '### `finetune evaluate DATA`'],
];

for (const [command, heading] of COMMANDS) {
  test(`finetune ${command.join(' ')}: README's flags and defaults equal --help's`, () => {
    const help = helpFlags(command);
    const readme = readmeFlags(heading);
    assert.deepEqual([...readme.keys()].filter((f) => !help.has(f)).sort(), [], `in README, not in --help (${heading})`);
    const train = inheritsTrain(heading) ? readmeFlags('### `finetune train DATA`') : new Map<string, Flag>();
    assert.deepEqual([...help.keys()].filter((f) => !readme.has(f) && !train.has(f)).sort(), [], `in --help, not in README (${heading})`);
    const differ = [...readme.values()].filter((f) => f.default !== undefined && help.get(f.name)?.default !== undefined && f.default !== help.get(f.name)!.default);
    assert.deepEqual(differ.map((f) => `${f.name}: README ${f.default}, --help ${help.get(f.name)!.default}`), []);
  });
}

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const root = path.resolve(import.meta.dirname, '..');
const src = path.join(root, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(full) : /\.(ts|mjs)$/.test(e.name) ? [full] : [];
  });
}

/** Every relative module a file names: static imports, re-exports, `import type`, `import()` and `typeof import()`. */
function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|^import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm)].map((m) => m[2]);
  return specs.map((s) => path.resolve(path.dirname(file), s));
}

test('src/ has no import cycle, not even through type-only imports', () => {
  const graph = new Map(sourceFiles(src).map((f) => [f, relativeImports(f)]));
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (f: string) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...stack.slice(stack.indexOf(f)), f].map((p) => path.relative(src, p)).join(' → '));
      return;
    }
    state.set(f, 'open');
    stack.push(f);
    for (const next of graph.get(f) ?? []) if (graph.has(next)) visit(next);
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f);
  assert.deepEqual(cycles, []);
});

test('the CLI reaches the library only through src/index.ts', () => {
  const strays: string[] = [];
  for (const file of sourceFiles(path.join(src, 'cli'))) {
    for (const target of relativeImports(file)) {
      if (target === path.join(src, 'index.ts')) continue;
      if (path.dirname(target) === path.join(src, 'cli')) continue;
      strays.push(`${path.relative(root, file)} imports ${path.relative(root, target)}`);
    }
  }
  assert.deepEqual(strays, []);
});

test('the root of src/ holds only what everything shares', () => {
  const loose = readdirSync(src, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name).sort();
  assert.deepEqual(loose, ['defaults.ts', 'errors.ts', 'index.ts', 'package.ts', 'paths.ts', 'progress.ts', 'tf.ts']);
});

test('importing the library loads no engine: tfjs, onnxruntime and sharp load on first use', () => {
  const script = `await import(${JSON.stringify(path.join(src, 'index.ts'))});
const { createRequire } = await import('node:module');
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => /@tensorflow|onnxruntime|[\\\\/]sharp[\\\\/]|h5wasm/.test(k));
process.stdout.write(JSON.stringify(loaded));`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), []);
});
